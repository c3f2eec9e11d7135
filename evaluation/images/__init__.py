"""Image metrics (fixture-FID, precision / recall, caption consistency, downstream accuracy,
memorisation) with the public SceneNet (``evaluation.scene_net``) on the emoji fixture
(``evaluation.fixtures.emoji``)."""
