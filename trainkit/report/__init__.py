"""Rendering results: terminal tables and progress (terminal), PNG plots (plots)."""
