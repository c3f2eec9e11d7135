"""Image evaluation: the public emoji fixture, a feature net trained on public renders only, and the
image metrics (fixture-FID, precision / recall, caption consistency, downstream accuracy)."""
