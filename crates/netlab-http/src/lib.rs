//! netlab-http (being written)
