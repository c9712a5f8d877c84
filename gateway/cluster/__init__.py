"""Cluster mode on NATS JetStream (docs/cluster.md): the replicated command log and, later, the roles."""
