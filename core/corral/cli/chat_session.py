"""The interactive ``corral chat`` session, like ``ollama run``: line editing and history (readline), slash
commands, multi-line input between ``\"\"\"`` lines, and Ctrl-C that stops an answer and keeps the session.

The session only talks to a loaded model's handle (in this process or in the server), so it works the
same both ways. Prompts and notices go to stderr; stdout carries only the model's answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import attrs

from corral.errors import CorralError, InvalidSetting
from corral.sampling import DEFAULT_SETTINGS

PROMPT = ">>> "
MORE = "... "
#: Parameters ``/set parameter`` takes, with their types (the saved sampling defaults, plus seed and stop).
PARAMETERS: dict[str, type] = {
    **{s.name: s.type for s in DEFAULT_SETTINGS if s.name != "system_prompt"},
    "seed": int,
    "min_p": float,
}
HELP = """Commands:
  /set system TEXT            use TEXT as the system prompt (starts a new conversation)
  /set parameter NAME VALUE   set a sampling parameter ({names})
  /show                       the model, the system prompt and the parameters
  /clear                      forget the conversation (the system prompt stays)
  /save NAME                  save this session's system prompt and parameters as a new model NAME
  /bye                        end the session (also Ctrl-D)
  /help                       this list
Write \"\"\" on a line to start and end a message of several lines. Ctrl-C stops an answer.
Up and Down recall earlier lines."""


def text_of(piece: Any) -> str:
    """The visible text of a streamed piece (a plain string, or a Delta's content)."""
    if isinstance(piece, str):
        return piece
    return getattr(piece, "content", None) or ""


@attrs.define
class Turn:
    """What one streamed answer took: its text, tokens (when the driver counted them) and timings."""

    text: str
    completion_tokens: int | None
    prompt_tokens: int | None
    first_piece_s: float | None
    total_s: float
    stopped: bool = False

    def summary(self) -> str:
        """``--verbose``'s line: time to the first piece, tokens per second."""
        parts = [f"total {self.total_s:.2f} s"]
        if self.first_piece_s is not None:
            parts.append(f"first token {self.first_piece_s * 1000:.0f} ms")
        if self.completion_tokens:
            gen = self.total_s - (self.first_piece_s or 0.0)
            parts.append(f"{self.completion_tokens} tokens")
            if gen > 0:
                parts.append(f"{self.completion_tokens / gen:.1f} tokens/s")
        return ", ".join(parts)


def stream_answer(handle: Any, messages: list[dict], params: Mapping[str, Any],
                  write: Callable[[str], None]) -> Turn:
    """Stream one answer, writing each piece as it comes. Ctrl-C stops it (the stream is closed, which
    cancels the generation) and returns what came so far, marked stopped."""
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    result = None
    stream: Iterator[Any] = iter(handle.chat(messages, stream=True, **params))
    stopped = False
    try:
        while True:
            try:
                piece = next(stream)
            except StopIteration as end:
                result = end.value
                break
            if first is None:
                first = time.perf_counter() - started
            text = text_of(piece)
            pieces.append(text)
            write(text)
    except KeyboardInterrupt:
        stopped = True
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return Turn(
        text="".join(pieces),
        completion_tokens=getattr(result, "completion_tokens", None),
        prompt_tokens=getattr(result, "prompt_tokens", None),
        first_piece_s=first,
        total_s=time.perf_counter() - started,
        stopped=stopped,
    )


class ChatSession:
    """One conversation with a loaded model, driven line by line (:meth:`run` reads the terminal)."""

    def __init__(self, handle: Any, model: str, *, params: Mapping[str, Any], system: str | None = None,
                 verbose: bool = False, save: Callable[[str, str | None, dict], str] | None = None,
                 out: Any = None, err: Any = None) -> None:
        self.handle = handle
        self.model = model
        self.params = dict(params)
        self.system = system
        self.verbose = verbose
        self.save = save
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.messages: list[dict] = []

    def _say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def conversation(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def ask(self, text: str) -> Turn:
        """Send ``text`` and stream the answer to stdout; the exchange joins the conversation (a stopped
        answer as far as it came)."""
        self.messages.append({"role": "user", "content": text})

        def write(piece: str) -> None:
            self.out.write(piece)
            self.out.flush()

        turn = stream_answer(self.handle, self.conversation(), self.params, write)
        self.out.write("\n")
        self.out.flush()
        if turn.stopped:
            self._say("[stopped]")
        self.messages.append({"role": "assistant", "content": turn.text})
        if self.verbose:
            self._say(turn.summary())
        return turn

    def command(self, line: str) -> bool:
        """Run a slash command; False when the session ends."""
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("bye", "exit", "quit"):
            return False
        if name in ("help", "?"):
            self._say(HELP.format(names=", ".join(sorted(PARAMETERS))))
        elif name == "clear":
            self.messages.clear()
            self._say("Cleared the conversation.")
        elif name == "show":
            self._say(f"model: {self.model}")
            self._say(f"system: {self.system or '(none)'}")
            shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "(the model's defaults)"
            self._say(f"parameters: {shown}")
        elif name == "set":
            self._set(rest)
        elif name == "save":
            if not rest:
                self._say("Usage: /save NAME")
            elif self.save is None:
                self._say("This session cannot save models.")
            else:
                try:
                    self._say(self.save(rest, self.system, dict(self.params)))
                except CorralError as exc:
                    self._say(f"Error: {exc}")
        else:
            self._say(f"Unknown command /{name}; /help lists them.")
        return True

    def _set(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        value = value.strip()
        if what == "system":
            self.system = value or None
            self.messages.clear()
            self._say("Set the system prompt." if value else "Removed the system prompt.")
            return
        if what == "parameter":
            key, _, raw = value.partition(" ")
            try:
                self.params[key] = parse_parameter(key, raw.strip())
            except InvalidSetting as exc:
                self._say(f"Error: {exc}")
                return
            self._say(f"Set {key} to {self.params[key]}.")
            return
        self._say("Usage: /set system TEXT, or /set parameter NAME VALUE")

    def run(self, read: Callable[[str], str] = input) -> None:
        """Read lines until /bye, Ctrl-D, or Ctrl-C at an empty prompt."""
        self._say(f"Chatting with {self.model}. /help lists the commands; /bye or Ctrl-D ends the chat.")
        while True:
            try:
                line = read(PROMPT)
            except EOFError:
                self._say("")
                return
            except KeyboardInterrupt:
                self._say("")
                return
            if line.strip() == '"""':
                try:
                    line = self._block(read)
                except (EOFError, KeyboardInterrupt):
                    self._say("")
                    continue
            elif not line.strip():
                continue
            elif line.startswith("/"):
                if not self.command(line.strip()):
                    return
                continue
            try:
                self.ask(line)
            except CorralError as exc:
                self.messages.pop()  # the question that got no answer
                self._say(f"Error: {exc}")

    @staticmethod
    def _block(read: Callable[[str], str]) -> str:
        lines = []
        while True:
            line = read(MORE)
            if line.strip() == '"""':
                return "\n".join(lines)
            lines.append(line)


def parse_parameter(key: str, raw: str) -> Any:
    """``/set parameter`` values, typed and checked like a request's."""
    from corral.sampling import read_sampling
    from corral.suggest import did_you_mean

    kind = PARAMETERS.get(key)
    if kind is None:
        hint = did_you_mean(key, PARAMETERS)
        raise InvalidSetting(f"no parameter {key!r}{'; ' + hint if hint else ''}; /help lists them")
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidSetting(f"{key} takes {'an integer' if kind is int else 'a number'}, not {raw!r}") from None
    read_sampling({key: value}, {key: kind})  # the same bounds a request meets
    return value


def open_history(home: Path) -> Callable[[], None]:
    """Line editing and history through readline when stdin is a terminal (history kept in
    ``CORRAL_HOME/chat_history``); returns what saves the history at the end."""
    try:
        import readline
    except ImportError:  # pragma: no cover - platforms without readline
        return lambda: None
    path = home / "chat_history"
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            home.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass

    return save


def json_answer(turn: Turn, model: str) -> str:
    """``--json``'s document for one answer."""
    return json.dumps({
        "model": model,
        "answer": turn.text,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "first_token_s": None if turn.first_piece_s is None else round(turn.first_piece_s, 4),
        "total_s": round(turn.total_s, 4),
    }, ensure_ascii=False)
