"""The rehearsal's artifact store, used by the upload-artifact and download-artifact stand-ins
(see their action.yml). Artifacts live in $UFFDC_REHEARSAL_STORE/artifacts/<name>/, one folder
per run, so a job that downloads what no job uploaded fails as it would on GitHub."""
import fnmatch
import os
import shutil
import sys


def store():
    root = os.environ.get("UFFDC_REHEARSAL_STORE")
    if not root:
        sys.exit("the rehearsal stand-ins run under cargo xtask ci rehearse (UFFDC_REHEARSAL_STORE is unset)")
    return os.path.join(root, "artifacts")


def expand(p):
    p = os.path.expanduser(p.strip())
    return os.path.normpath(os.path.join(os.environ["GITHUB_WORKSPACE"], p))


def upload():
    name = os.environ["NAME"]
    paths = [expand(p) for p in os.environ["PATHS"].splitlines() if p.strip()]
    found = [p for p in paths if os.path.exists(p)]
    for p in paths:
        if p not in found:
            msg = f"No files were found with the provided path: {p}"
            if os.environ.get("IF_NONE") == "error":
                sys.exit(f"upload-artifact stand-in: {msg}")
            print(f"::warning::{msg}")
    if not found:
        print(f"::warning::upload-artifact stand-in: nothing found, no artifact {name} uploaded")
        return
    # GitHub's layout: relative to the least common ancestor of the search paths (a lone directory
    # is its own root; a lone file's root is its folder).
    roots = [p if os.path.isdir(p) else os.path.dirname(p) for p in paths]
    base = os.path.commonpath(roots) if len(paths) > 1 else roots[0]
    dest = os.path.join(store(), name)
    if os.path.exists(dest):
        sys.exit(f"upload-artifact stand-in: an artifact named {name} exists already in this run (409 Conflict)")
    os.makedirs(dest)
    for p in found:
        target = os.path.join(dest, os.path.relpath(p, base))
        if os.path.isdir(p):
            shutil.copytree(p, target, symlinks=True, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(p, target)
    print(f"upload-artifact stand-in: {name} <- {', '.join(found)}")


def download():
    name, pattern = os.environ.get("NAME", ""), os.environ.get("PATTERN", "")
    dest = expand(os.environ.get("DEST") or ".")
    have = sorted(os.listdir(store())) if os.path.isdir(store()) else []
    if name:
        if name not in have:
            sys.exit(f"Unable to download artifact(s): Artifact not found for name: {name} (uploaded in this run: {', '.join(have) or 'none'})")
        shutil.copytree(os.path.join(store(), name), dest, symlinks=True, dirs_exist_ok=True)
        print(f"download-artifact stand-in: {name} -> {dest}")
        return
    chosen = [a for a in have if not pattern or fnmatch.fnmatch(a, pattern)]
    for a in chosen:
        into = dest if os.environ.get("MERGE") == "true" else os.path.join(dest, a)
        shutil.copytree(os.path.join(store(), a), into, symlinks=True, dirs_exist_ok=True)
    print(f"download-artifact stand-in: {len(chosen)} artifact(s) ({', '.join(chosen)}) -> {dest}")


{"upload": upload, "download": download}[sys.argv[1]]()
