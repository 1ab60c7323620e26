"""Peer systems measured on the same workloads as Mainspring, in the same process."""
