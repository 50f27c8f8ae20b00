"""Sans-IO IRC: messages, numerics and name rules, with no sockets, loop, database or clock."""
