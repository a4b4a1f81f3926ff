"""``python -m edgeseg`` and the ``edgeseg`` command. The CLI's own packages (typer, rich,
pyyaml, OpenCV: the ``cli`` extra) may be missing on a runtime-only install: say which extra to
install instead of a traceback."""

# Packages of the cli extra, as their modules are named.
CLI_PACKAGES = {"typer", "click", "rich", "yaml", "cv2"}


def main() -> None:
    try:
        from edgeseg.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in CLI_PACKAGES:
            raise
        import sys

        print(
            f'error: the edgeseg command needs {exc.name!r}, which is not installed; install the CLI '
            'with `pip install "edgeseg[cli]"` (the runtime-* extras include it)', file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli_main()


if __name__ == "__main__":
    main()
