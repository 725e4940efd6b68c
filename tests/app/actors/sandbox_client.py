"""The application's own sandbox code against the sandbox stand-in (runs in the app's env).

``python sandbox_client.py STANDIN_URL ROOT`` prints one line ``RESULT {json}``: what Yuxi-Know
v0.6.1's code made of the stand-in's answers, with ROOT the stand-in's ``--root``:

- ``client``: the ``agent_sandbox`` client (``Sandbox(base_url=...)``, as the app builds it)
  making each call the app's backend makes: ``sandbox.get_context``, ``file.write_file`` (text
  and base64), ``file.read_file`` (whole, and lines), ``file.list_path``, ``file.find_files``,
  ``file.str_replace_editor``, ``shell.exec_command`` (a success and a failure), and a read
  outside ROOT (the exception it raised);
- ``backend``: the app's ``ProvisionerSandboxBackend`` for a thread, through the provisioner
  at ``SANDBOX_PROVISIONER_URL`` (which names the stand-in): write, write again, read, edit,
  ls_info, glob_info, grep_raw, execute, upload_files and download_files, and a read outside ROOT.
"""

import base64
import dataclasses
import json
import os
import sys
import traceback
from typing import Any

BINARY = bytes(range(256))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def client_calls(url: str, root: str) -> dict[str, Any]:
    from agent_sandbox import Sandbox

    sandbox = Sandbox(base_url=url, timeout=60)
    folder = f"{root}/user-data/workspace/client"
    path = f"{folder}/notes.txt"
    out: dict[str, Any] = {}
    context = sandbox.sandbox.get_context()
    out["context"] = {"success": context.success, "home_dir": context.home_dir, "version": context.version}
    written = sandbox.file.write_file(file=path, content="one\ntwo\nthree\n")
    out["write"] = {
        "success": written.success,
        "file": written.data.file,
        "bytes": written.data.bytes_written,
    }
    upload = sandbox.file.write_file(
        file=f"{folder}/blob.bin", content=base64.b64encode(BINARY).decode(), encoding="base64"
    )
    out["write_base64"] = {"success": upload.success, "bytes": upload.data.bytes_written}
    out["read"] = sandbox.file.read_file(file=path).data.content
    out["read_lines"] = sandbox.file.read_file(file=path, start_line=1, end_line=2).data.content
    blob = sandbox.file.read_file(file=f"{folder}/blob.bin").data.content
    out["read_binary_ok"] = base64.b64decode(blob) == BINARY
    listed = sandbox.file.list_path(path=folder, recursive=False, include_size=True).data
    out["list"] = sorted(
        [e.name, e.path, e.is_directory, e.size, bool(e.modified_time)] for e in listed.files or []
    )
    out["find"] = sandbox.file.find_files(path=f"{root}/user-data", glob="*.txt").data.files
    edited = sandbox.file.str_replace_editor(
        command="str_replace", path=path, old_str="two", new_str="TWO", replace_mode="FIRST"
    )
    out["edit"] = {"success": edited.data.success, "new_content": edited.data.new_content}
    ok = sandbox.shell.exec_command(command=f"cat {path}").data
    out["exec_ok"] = {"output": ok.output, "exit_code": ok.exit_code, "status": ok.status}
    failed = sandbox.shell.exec_command(command="echo failing >&2; exit 7", timeout=30).data
    out["exec_failed"] = {"output": failed.output, "exit_code": failed.exit_code}
    try:
        sandbox.file.read_file(file="/etc/hostname")
        out["outside"] = "read"
    except Exception as exc:
        out["outside"] = {
            "type": type(exc).__name__,
            "status": getattr(exc, "status_code", None),
            "body": str(exc),
        }
    return out


def backend_calls(root: str) -> dict[str, Any]:
    from yuxi.agents.backends.sandbox import ProvisionerSandboxBackend

    backend = ProvisionerSandboxBackend(thread_id="standin-thread", user_id="standin-user")
    folder = f"{root}/user-data/outputs/backend"
    path = f"{folder}/report.md"
    out: dict[str, Any] = {"sandbox_id": backend.id}
    out["write"] = _plain(backend.write(path, "# Report\nstatus: draft\n"))
    out["write_again"] = _plain(backend.write(path, "other"))
    out["edit"] = _plain(backend.edit(path, "draft", "final"))
    out["read"] = backend.read(path)
    out["ls_info"] = sorted(
        [info["path"], info["is_dir"], info.get("size")]
        for info in backend.ls_info(f"{root}/user-data/outputs")
    )
    out["glob_info"] = [info["path"] for info in backend.glob_info("*.md", folder)]
    out["grep_raw"] = _plain(backend.grep_raw("final", folder))
    out["execute_ok"] = _plain(backend.execute(f"wc -l < {path}"))
    out["execute_failed"] = _plain(backend.execute("echo gone >&2; exit 5"))
    out["upload"] = _plain(backend.upload_files([(f"{folder}/blob.bin", BINARY)]))
    downloaded = backend.download_files([f"{folder}/blob.bin"])
    out["download_ok"] = [d.content == BINARY and d.error is None for d in downloaded]
    out["read_outside"] = backend.read("/etc/hostname")
    return out


def main() -> None:
    sys.path.insert(0, os.getcwd())  # the app's folder (server/, package/), as its own processes have it
    url, root = sys.argv[1], sys.argv[2]
    try:
        result = {"client": client_calls(url, root), "backend": backend_calls(root)}
    except Exception:
        result = {"error": traceback.format_exc()}
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
