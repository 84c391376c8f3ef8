"""The Action Cable protocol, sans I/O: no trio, no sockets, no clock."""
