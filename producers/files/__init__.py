"""Legacy file drops: CSV exports mapped by YAML onto canonical events (docs/file-drops.md)."""
