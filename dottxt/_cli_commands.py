"""What each `dottxt` subcommand does (login, logout, models, generate, stream, schema, demo, fake-gateway).

`dottxt batch` lives in `_cli_batch.py`; the parser and the entry point in `_cli.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._cli_common import (
    EXIT_OK,
    FAKE_GATEWAY_MODELS,
    CLIError,
    ascii_only,
    chat_input,
    cli_log,
    dumps,
    emit,
    emit_json,
    explain,
    generation_options,
    isatty,
    make_client,
    model_arg,
    ms_since,
    prompt_arg,
    read_schema,
    secret_filter,
    stderr_note,
)

__all__ = [
    "cmd_login",
    "cmd_logout",
    "cmd_models",
    "cmd_generate",
    "cmd_stream",
    "cmd_schema_check",
    "cmd_schema_show",
    "cmd_demo",
    "cmd_fake_gateway",
]

# --------------------------------------------------------------------------- commands


def cmd_login(args: argparse.Namespace) -> int:
    """Check the key by listing models; store it only when the API accepts it."""
    key = os.environ.get("DOTTXT_API_KEY", "").strip()
    source = "DOTTXT_API_KEY"
    if not key:
        stdin = sys.stdin
        if stdin is not None and not stdin.isatty():
            lines = stdin.read().strip().splitlines()
            key, source = (lines[0].strip() if lines else ""), "stdin"
        elif stdin is not None:
            import getpass

            try:
                key, source = getpass.getpass("dottxt API key: ").strip(), "the prompt"
            except EOFError:
                key = ""
    if not key:
        raise CLIError("no API key given: set DOTTXT_API_KEY, pipe the key on stdin, or type it at the prompt")
    from ._cli_compat import login_payload, model_records, server_detail
    from ._credentials import save_api_key
    from ._errors import AuthenticationError, DotTxtError

    start = time.perf_counter()
    with make_client(key, source) as client:
        try:
            records, note = model_records(client)
        except AuthenticationError as exc:
            detail = server_detail(exc)
            raise CLIError(f"the API key from {source} was rejected ({detail}); nothing was stored") from None
        except DotTxtError as exc:
            raise CLIError(f"could not check the API key, nothing was stored: {explain(exc)}") from None
    count = len(records)
    cli_log().debug("key checked in %.0f ms (%d models)", ms_since(start), count)
    if note:
        stderr_note(args, note)
    path = save_api_key(key)
    if args.json:
        emit_json(login_payload(path, source, count))
    else:
        models = f"{count} model{'' if count == 1 else 's'}"
        emit(f"Logged in: the key from {source} works ({models} available) and is stored in {path}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    """Delete the stored key; not having one is fine too."""
    from ._cli_compat import logout_payload
    from ._credentials import credentials_path, delete_api_key

    path = credentials_path()
    deleted = delete_api_key()
    if args.json:
        emit_json(logout_payload(path, deleted))
    elif deleted:
        emit(f"Logged out: deleted the key stored in {path}")
    else:
        emit(f"Not logged in: no key was stored in {path}")
    if os.environ.get("DOTTXT_API_KEY"):
        stderr_note(args, "note: DOTTXT_API_KEY is still set, so commands keep using that key")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    """One id per line, the DOTTXT_MODEL one marked; --json: the records as the server sent them."""
    from ._cli_compat import author_matches, model_records

    start = time.perf_counter()
    with make_client() as client:
        try:
            records, note = model_records(client)
        except Exception as exc:
            raise CLIError(explain(exc, base_url=client.base_url)) from exc
    cli_log().debug("listed %d models in %.0f ms", len(records), ms_since(start))
    if note:
        stderr_note(args, note)
    if args.author:
        records = [record for record in records if author_matches(record, args.author)]
    if args.json:
        emit_json(records)
        return EXIT_OK
    default = os.environ.get("DOTTXT_MODEL")
    for record in records:
        model_id = str(record.get("id"))
        emit(f"{model_id} * (default)" if default and model_id == default else model_id)
    if default and not args.author and all(record.get("id") != default for record in records):
        stderr_note(args, f"note: DOTTXT_MODEL={default} is not among the models this key can use")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """Print the generated document: indented JSON, or one line with --json."""
    model = model_arg(args)
    schema = read_schema(args.schema)
    prompt = prompt_arg(args)
    from contextlib import nullcontext

    from ._cli_live import Ticker

    with make_client() as client:
        cli_log().debug("sending the request")
        start = time.perf_counter()
        show_time = isatty(sys.stderr) and not args.json and not args.verbose  # --verbose logs there instead
        try:
            with Ticker(sys.stderr, "generating", start) if show_time else nullcontext():
                result = client.generate(
                    model=model, response_format=schema, input=chat_input(args, prompt), **generation_options(args)
                )
        except Exception as exc:
            raise CLIError(explain(exc, model=model, base_url=client.base_url)) from exc
    cli_log().debug("generated in %.0f ms", ms_since(start))
    if args.json:  # upstream's keys: {"model", "prompt", "schema_summary", "result"}
        from ._cli_compat import generate_payload

        emit_json(generate_payload(model, prompt, schema, result))
    else:
        emit_json(result, pretty=True)
    return EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
    """Stream ops: the live view on a terminal, else one JSON line per op; check the final document."""
    model = model_arg(args)
    schema = read_schema(args.schema)
    prompt = prompt_arg(args)
    from contextlib import ExitStack

    from ._cli_live import LiveView, OpRecorder

    log = cli_log()
    count = 0
    with make_client() as client, ExitStack() as stack:
        from ._errors import APIConnectionError

        recorder = stack.enter_context(OpRecorder(args.record)) if args.record else None
        log.debug("sending the request")
        start = time.perf_counter()
        live = isatty(sys.stdout) and not (args.ndjson or args.json)
        view = stack.enter_context(LiveView(sys.stdout, start)) if live else None
        try:
            with client.stream(
                model=model, response_format=schema, input=chat_input(args, prompt), **generation_options(args)
            ) as stream:
                for event in stream:
                    ms = ms_since(start)
                    if count == 0:
                        log.debug("first op after %.0f ms", ms)
                    count += 1
                    if recorder is not None:
                        recorder.write(event.op, ms)
                    if view is None:
                        emit(dumps(event.op, sys.stdout))
                    elif event.is_leaf:
                        view.field(event.field, event.value, ms)
                result = stream.result()  # the final document must match the schema
            if view is not None:
                view.result(result, ms_since(start), ascii_only=ascii_only(sys.stdout))
        except BrokenPipeError:
            raise  # stdout was closed: main() exits 141
        except Exception as exc:
            if count and isinstance(exc, APIConnectionError):
                raise CLIError(f"the stream broke after {count} ops: {exc.message}") from exc
            raise CLIError(explain(exc, model=model, base_url=client.base_url)) from exc
    log.debug("%d ops in %.0f ms", count, ms_since(start))
    return EXIT_OK


def cmd_schema_check(args: argparse.Namespace) -> int:
    """Validate a schema file offline: `ok: FILE`, or an error saying where it fails."""
    read_schema(args.file)
    if args.json:
        emit_json({"status": "ok", "schema_file": args.file})
    else:
        emit(f"ok: {args.file}")
    return EXIT_OK


def cmd_schema_show(args: argparse.Namespace) -> int:
    """Print the JSON Schema a -s argument makes: indented, or one line with --json."""
    emit_json(read_schema(args.schema), pretty=not args.json)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The ticket-triage stream against an in-process fake gateway, each field timed."""
    from . import _demo as demo

    if args.web:
        from .web._demo_server import serve

        serve(port=args.port, op_delay=args.op_delay, emit=emit)
        return EXIT_OK
    op_delay = demo.DEFAULT_OP_DELAY if args.op_delay is None else args.op_delay
    if args.json:
        arrivals = demo.run_demo(op_delay=op_delay, on_field=lambda a: emit_json(a.as_dict()))
        emit_json(demo.summary_dict(arrivals))
        return EXIT_OK
    for line in demo.intro(op_delay):
        emit(line)
    arrivals = demo.run_demo(op_delay=op_delay, on_field=lambda a: emit(demo.format_arrival(a)))
    for line in demo.outro(arrivals):
        emit(line)
    return EXIT_OK


def cmd_fake_gateway(args: argparse.Namespace) -> int:
    """Serve a FakeGateway until Ctrl-C, after printing how to point the SDK and CLI at it."""
    from .testing import FakeGateway

    options: dict[str, Any] = {"host": args.host, "port": args.port, "op_delay": args.op_delay}
    if args.api_key:
        options["api_key"] = args.api_key
        secret_filter.secrets.add(args.api_key)
    options["models"] = tuple(args.model or FAKE_GATEWAY_MODELS)
    try:
        gateway = FakeGateway(**options)
    except OSError as exc:
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    with gateway:
        if args.json:
            emit_json(
                {"base_url": gateway.base_url, "models": list(gateway.models), "api_key_required": bool(args.api_key)}
            )
        else:
            key_hint = (
                "export DOTTXT_API_KEY=...        # the key given with --api-key"
                if args.api_key
                else "export DOTTXT_API_KEY=anything   # any key is accepted"
            )
            for line in (
                f"Fake .txt gateway serving at {gateway.base_url} (Ctrl-C to stop)",
                "",
                f"  export DOTTXT_BASE_URL={gateway.base_url}",
                f"  {key_hint}",
                f"  export DOTTXT_MODEL={gateway.models[0]}",
            ):
                emit(line)
        cli_log().debug("op delay %.3f s, models %s", args.op_delay, ", ".join(gateway.models))
        while True:  # until Ctrl-C; sleep is interruptible on every platform
            time.sleep(3600)
