//! netlab-loadgen (being written)
