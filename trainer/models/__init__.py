"""Models the engine ships with, built locally so training needs no network or model hub."""
