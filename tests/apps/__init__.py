"""Applications the test suite serves (in process and as real servers)."""
