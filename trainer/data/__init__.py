"""Layer 3: raw rows in common shapes -> canonical examples -> profile-rendered, masked tokens."""
