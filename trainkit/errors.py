"""Errors a user can fix. Each carries its exit code and renders without a traceback."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(frozen=True)
class Issue:
    """One problem in a config: where it is, which key, what is wrong, how to fix it."""

    source: str  # file name, or "--set key=value" for an override
    line: int | None
    column: int | None
    key: str  # dotted path, e.g. "optimizer.lr"
    message: str
    hint: str | None = None

    def where(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"

    def render(self) -> str:
        head = f"{self.where()}: {self.key}: {self.message}" if self.key else f"{self.where()}: {self.message}"
        return head + (f"\n    help: {self.hint}" if self.hint else "")

    def to_dict(self) -> dict:
        return {
            "file": self.source,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }


class TrainkitError(Exception):
    """Base for errors caused by input; the CLI prints them and exits with `exit_code`.

    Every subclass pickles (it must cross from a compare-optimizers worker process to the
    parent): one whose __init__ takes other arguments than the message defines __reduce__."""

    exit_code = EXIT_USAGE
    kind = "error"

    def to_dict(self) -> dict:
        return {"type": self.kind, "message": str(self)}


class ConfigError(TrainkitError):
    """Every problem found in a config, reported together."""

    kind = "config"

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        super().__init__(self.render())

    def __reduce__(self):
        return (type(self), (self.issues,))

    @classmethod
    def one(
        cls,
        source: str,
        message: str,
        hint: str | None = None,
        key: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> ConfigError:
        """A single problem, e.g. with a whole file or a command-line option."""
        return cls([Issue(source, line, column, key, message, hint)])

    def render(self) -> str:
        n = len(self.issues)
        head = f"{n} error{'s' if n != 1 else ''} in config:"
        return head + "\n" + "\n".join("  " + i.render().replace("\n", "\n  ") for i in self.issues)

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            "message": self.render(),
            "issues": [i.to_dict() for i in self.issues],
        }


class DataError(TrainkitError):
    """A data file that cannot be used: names the file and, where known, row and column,
    and the config key that pointed at it (`origin`)."""

    kind = "data"

    def __init__(self, message: str, path: str | None = None, hint: str | None = None, origin: str | None = None):
        self.message, self.path, self.hint, self.origin = message, path, hint, origin
        text = f"{path}: {message}" if path else message
        if origin:
            text += f"\n    from: {origin}"
        super().__init__(text + (f"\n    help: {hint}" if hint else ""))

    def __reduce__(self):
        return (type(self), (self.message, self.path, self.hint, self.origin))

    def located(self, origin: str) -> DataError:
        """The same error, saying which config key led to the file."""
        return DataError(self.message, self.path, self.hint, self.origin or origin)

    def to_dict(self) -> dict:
        return {"type": self.kind, "message": str(self), "file": self.path, "origin": self.origin, "hint": self.hint}


def npz_reason(e: Exception) -> str:
    """Why np.load(..., allow_pickle=False) failed, in the user's terms: numpy calls any file
    that is neither a zip nor a .npy "pickled data" and advises unpickling it, which trainkit never does."""
    text = str(e)
    return "not an .npz file (neither a zip archive nor a .npy array)" if "allow_pickle" in text else text
