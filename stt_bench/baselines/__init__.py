"""What each STT figure is compared with: raw UDP+AEAD per runtime, TCP+TLS 1.3, aioquic."""
