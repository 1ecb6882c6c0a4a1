"""`mraru demo`: the whole loop on 127.0.0.1 with a real corpus (filled in below)."""


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="rotten_tomatoes")


def run_demo(args) -> int:
    raise NotImplementedError("mraru demo is being written")
