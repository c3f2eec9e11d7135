"""Album metrics: coherence of an album's captions and photos with its summary (hero, theme)."""
