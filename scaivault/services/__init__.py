"""Domain operations the blueprints call; no Flask imports here."""
