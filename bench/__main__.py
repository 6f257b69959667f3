"""`python -m bench NAME [args]`: run one benchmark module's `main(argv)`."""

import importlib
import sys


def main() -> int:
    if len(sys.argv) < 2:
        print(
            "usage: python -m bench NAME [args] (lab_startup, renewal; NAME --help for each)", file=sys.stderr
        )
        return 2
    module = importlib.import_module(f"bench.{sys.argv[1]}")
    result: int = module.main(sys.argv[2:])
    return result


if __name__ == "__main__":
    sys.exit(main())
