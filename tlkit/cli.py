"""The ``tlkit`` command line: it only parses arguments and calls the library."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from tlkit import TlkitError, quiet
from tlkit.data import CROPS
from tlkit.export import FORMATS
from tlkit.predict import DEFAULT_MAX_PIXELS, Limits
from tlkit.system import Terminated


def _train(a: argparse.Namespace) -> None:
    from tlkit.pipeline import train_run

    train_run(a.dataset, a.base, epochs=a.epochs, batch_size=a.batch_size, img_size=a.img_size,
              finetune=a.finetune, finetune_epochs=a.finetune_epochs, weights=a.weights,
              alpha=a.alpha, data_dir=a.data_dir, weights_dir=a.weights_dir,
              limit_per_class=a.limit_per_class, crop=a.crop, seed=a.seed, out=a.out, lr=a.lr,
              augment=not a.no_augment, class_weight="balanced" if a.class_weights else None,
              early_stopping=a.patience, label_smoothing=a.label_smoothing,
              tensorboard=a.tensorboard, overwrite=a.overwrite, verbose=a.verbose)


def _info(a: argparse.Namespace) -> None:
    from tlkit.info import info_text

    print(info_text(a.data_dir, a.weights_dir))


def _cache(a: argparse.Namespace) -> None:
    from tlkit.system import CACHE_KINDS, cache_dir, cache_usage, clear_cache

    def mb(n: int) -> str:
        return f"{n / 2**20:.1f} MB"

    if a.action == "clear":
        kinds = [k for k in CACHE_KINDS if getattr(a, k)] or list(CACHE_KINDS)
        freed = clear_cache(kinds)
        print(f"freed {mb(sum(freed.values()))} in {cache_dir()} ("
              + ", ".join(f"{k} {mb(n)}" for k, n in freed.items()) + ")")
        return
    usage = cache_usage()
    print(f"cache {cache_dir()} (TLKIT_CACHE_DIR)")
    for kind, u in usage.items():
        temp = (f"  + {u['temp_files']} temp file(s), {mb(u['temp_bytes'])} "
                "(cleaned after an hour)" if u["temp_files"] else "")
        print(f"  {kind:9s} {u['entries']:5d} entries {mb(u['bytes']):>10s}{temp}")
    total = sum(u["bytes"] + u["temp_bytes"] for u in usage.values())
    print(f"  {'total':9s} {'':13s} {mb(total):>10s}   free it with: tlkit cache clear")


def _course(a: argparse.Namespace) -> None:
    from tlkit.course import run_course

    summary = run_course(a.profile, data_dir=a.data_dir, weights_dir=a.weights_dir, out=a.out,
                         notebooks=a.notebooks, only=a.only, resume=a.resume)
    if summary["failed"]:
        raise SystemExit(1)


def _book(a: argparse.Namespace) -> None:
    from tlkit.book import build_book

    build_book(run=a.run, root=a.root)


def _reference(a: argparse.Namespace) -> None:
    from tlkit.book import save_reference

    print(f"reference results saved in {save_reference(a.run, a.root)}")


def _bench(a: argparse.Namespace) -> None:
    from tlkit.bench import run_bench

    run_bench(a.suite, data_dir=a.data_dir, weights_dir=a.weights_dir, out=a.out,
              course_summary=a.course_summary, only=a.only, dry_run=a.dry_run)


def _predict(a: argparse.Namespace) -> None:
    from tlkit.predict import Predictor

    pred = Predictor.load(a.model, threshold=a.threshold)  # checks the threshold first
    for path, (label, conf) in zip(a.images, pred.predict_files(a.images, a.max_pixels)):
        print(f"{path}\t{label}\t{conf:.3f}")


def _serve(a: argparse.Namespace) -> None:
    from tlkit.predict import check_threshold

    check_threshold(a.threshold)
    limits = Limits(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Limits)})
    from tlkit.service import serve  # names the serve extra when it is missing

    serve(a.model, host=a.host, port=a.port, threshold=a.threshold, limits=limits)


def _export(a: argparse.Namespace) -> None:
    from tlkit.export import export_model

    print(f"exported {export_model(a.model, a.format, a.out)}")


def parser() -> argparse.ArgumentParser:
    from tlkit.bench import PARTS

    p = argparse.ArgumentParser(prog="tlkit", description="Transfer-learning workbook toolkit.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model and write curves, confusion matrix, "
                                     "prediction grid, record and model into one folder")
    t.add_argument("--dataset", default="synthetic",
                   help="synthetic, cifar10, cifar100, flowers, or a path to an image folder/archive")
    t.add_argument("--base", default="cnn", help="model name from the registry (e.g. resnet50, cnn)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--img-size", type=int, default=None,
                   help="input size the model sees (default: the model's own; at most 1024)")
    t.add_argument("--finetune", action="store_true",
                   help="notebook 3's recipe: the head on cached features, then the top of the "
                        "backbone with it at --lr/10 (BatchNormalization frozen)")
    t.add_argument("--finetune-epochs", type=int, default=None, help="default: --epochs")
    t.add_argument("--weights", default=None, help="imagenet, none, or a weights file")
    t.add_argument("--alpha", type=float, default=None, help="width multiplier (MobileNets)")
    t.add_argument("--data-dir", default=None, help="local data sets (default $TLKIT_DATA_DIR)")
    t.add_argument("--weights-dir", default=None, help="local weights (default $TLKIT_WEIGHTS_DIR)")
    t.add_argument("--limit-per-class", type=int, default=None)
    t.add_argument("--crop", default="squash", choices=CROPS,
                   help="how non-square photos become square: center (crop the middle), pad "
                        "(letterbox), squash (resize whole, distorted)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--class-weights", action="store_true", help="balance classes by frequency")
    t.add_argument("--patience", type=int, default=5, help="early stopping (0: off)")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs")
    t.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    t.add_argument("--out", default="runs/train", help="each run writes the folder OUT/<prefix>/")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.set_defaults(func=_train)

    i = sub.add_parser("info", help="backend, devices, versions, local data and weights")
    i.add_argument("--data-dir", default=None)
    i.add_argument("--weights-dir", default=None)
    i.set_defaults(func=_info)

    ca = sub.add_parser("cache", help="show or free the cache of decoded data sets and features")
    casub = ca.add_subparsers(dest="action", required=True)
    casub.add_parser("info", help="entries and sizes per kind").set_defaults(func=_cache)
    cc = casub.add_parser("clear", help="remove cache entries (default: every kind)")
    cc.add_argument("--datasets", action="store_true", help="only decoded data sets")
    cc.add_argument("--features", action="store_true", help="only frozen features")
    cc.set_defaults(func=_cache)

    c = sub.add_parser("course", help="run the course notebooks")
    csub = c.add_subparsers(dest="action", required=True)
    cr = csub.add_parser("run", help="execute the notebooks in order with papermill")
    cr.add_argument("--profile", choices=("smoke", "cpu", "gpu"), default="smoke")
    cr.add_argument("--data-dir", default=None)
    cr.add_argument("--weights-dir", default=None)
    cr.add_argument("--out", default=None, help="default: runs/<profile>")
    cr.add_argument("--notebooks", default=None, help="folder of the source notebooks")
    cr.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 01 02")
    cr.add_argument("--resume", action="store_true",
                    help="keep the notebooks already ok in --out (after an interrupted run)")
    cr.set_defaults(func=_course)

    b = sub.add_parser("book", help="build the Jupyter Book")
    bsub = b.add_subparsers(dest="action", required=True)
    bb = bsub.add_parser("build", help="build the HTML book offline, by default from the committed reference run")
    bb.add_argument("--run", default=None, help="output folder of 'tlkit course run' to show instead "
                    "of the reference run (book/reference/<profile>/)")
    bb.add_argument("--root", default=".", help="the repository root (holds _config.yml)")
    bb.set_defaults(func=_book)
    br = bsub.add_parser("reference", help="keep a finished course run (executed notebooks and records) "
                         "as the book's reference run")
    br.add_argument("--run", required=True, help="output folder of 'tlkit course run'")
    br.add_argument("--root", default=".")
    br.set_defaults(func=_reference)

    be = sub.add_parser("bench", help="run a benchmark suite and write bench.json")
    be.add_argument("--suite", choices=("smoke", "cpu", "gpu"), default="smoke")
    be.add_argument("--data-dir", default=None)
    be.add_argument("--weights-dir", default=None)
    be.add_argument("--out", default="runs/bench")
    be.add_argument("--course-summary", default=None,
                    help="summary.json of the course run to time: a smoke run for the smoke and cpu suites "
                         "and the gpu suite's dry run, a gpu run for the gpu suite (default: run that course)")
    be.add_argument("--only", nargs="+", default=None, choices=PARTS,
                    help="re-run these parts of the suite, keep the others from --out's bench.json")
    be.add_argument("--dry-run", action="store_true",
                    help="gpu suite: its code at the smoke sizes, no goal judged (the default without a GPU)")
    be.set_defaults(func=_bench)

    pr = sub.add_parser("predict", help="classify image files with a trained model")
    pr.add_argument("model", help="a _model.keras file written by 'tlkit train'")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--threshold", type=float, default=0.5, help="below this: 'unknown'")
    pr.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="refuse larger images (decompression bombs)")
    pr.set_defaults(func=_predict)

    sv = sub.add_parser("serve", help="serve a trained model over HTTP (needs the serve extra)")
    sv.add_argument("--model", required=True, help="a _model.keras file written by 'tlkit train'")
    sv.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to reach it from a phone on the LAN")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--threshold", type=float, default=0.5, help="below this: 'unknown'")
    for f in dataclasses.fields(Limits):
        sv.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                        help=f.metadata["help"])
    sv.set_defaults(func=_serve)

    ex = sub.add_parser("export", help="export a trained model (keras, savedmodel, onnx, tflite)")
    ex.add_argument("model", help="a _model.keras file written by 'tlkit train'")
    ex.add_argument("--format", required=True, choices=FORMATS)
    ex.add_argument("--out", default=None, help="folder (default: beside the model)")
    ex.set_defaults(func=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        quiet()  # an application may quiet TensorFlow; importing tlkit does not
        args.func(args)
    except TlkitError as e:
        print(f"tlkit: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"tlkit: {e}", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended
    except KeyboardInterrupt:
        print("tlkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
