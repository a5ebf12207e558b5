"""STT measured per runtime: throughput, ping-pong, handshakes, the core alone, idle sessions,
worker scaling, the far end in another process and the CPU profile."""
