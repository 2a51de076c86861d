from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from jobs import cli, orchestrator
from stages import uploads

USAGE = """one or more edits, each a target followed by what to change:
  --scene N (--text T | --image PATH | --clip PATH | --pick)
  --sentence N --text T [--headline H]     (a script line: new narration)
  --caption N --text T                     (the words on screen, speech unchanged)
  --revoice N [--voice V]                  (a new take of one segment)
  --voice V                                (the whole voice, when not after --revoice)
Segments are numbered from 1 (the hook), as the console shows them."""


class _Edits(argparse.Action):
    """Collects the edits in the order given: a target opens an edit, the options after it fill it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        edits = getattr(namespace, "edits", None)
        if edits is None:
            edits = []
            namespace.edits = edits
        name = option_string.lstrip("-")
        if name in ("scene", "sentence", "caption", "revoice"):
            kind = {"sentence": "script_line", "revoice": "voice"}.get(name, name)
            edits.append({"kind": kind, "index": _index(value, option_string)})
            return
        target = edits[-1] if edits else None
        if name == "voice" and (target is None or target["kind"] != "voice" or "voice" in target):
            edits.append({"kind": "voice", "voice": value})  # the whole voice
            return
        if target is None:
            raise CommandError(f"{option_string} must follow --scene, --sentence, --caption or --revoice", returncode=2)
        field = {"image": "upload", "clip": "upload"}.get(name, name)
        if field in target:
            raise CommandError(f"{option_string} given twice for one edit", returncode=2)
        target[field] = "next" if name == "pick" else value
        if name in ("image", "clip"):
            target["_file"] = (name, value)


def _index(value: str, option: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise CommandError(f"{option} takes a segment number, not {value!r}", returncode=2) from None


class Command(BaseCommand):
    help = "Change one part of a job's video (a scene, a voice, a caption, a script line); only what depends on it runs again."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = USAGE
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id")
        for option in ("--scene", "--sentence", "--caption", "--revoice"):
            parser.add_argument(option, action=_Edits, metavar="N", dest="edits")
        for option in ("--text", "--headline", "--image", "--clip", "--voice"):
            parser.add_argument(option, action=_Edits, dest="edits")
        parser.add_argument("--pick", action=_Edits, nargs=0, dest="edits", help="another stock pick / card variant")
        parser.add_argument("--notes", default="", help="why (kept with the edit)")
        parser.add_argument("--user", dest="username", help="who asks (recorded with the edit; needs jobs.change_job)")

    def handle(self, *args, job_id: str, edits: list | None, notes: str, username: str | None, **options) -> None:
        job = cli.get_job(job_id)
        if not edits:
            raise CommandError("no edit given\n" + USAGE, returncode=2)
        if not username:
            raise CommandError("an edit is recorded against a person: name them with --user", returncode=2)
        user = cli.get_user(username)
        if not (user.is_active and user.has_perm("jobs.change_job")):
            raise CommandError(f"user {username!r} may not edit jobs (needs jobs.change_job)", returncode=1)
        for edit in edits:
            kind_file = edit.pop("_file", None)
            if kind_file is None:
                continue
            kind, path = kind_file
            try:
                stored = uploads.store(job.pk, path)
            except (OSError, uploads.UploadError) as exc:
                raise CommandError(f"--{kind} {path}: {exc}", returncode=2) from None
            if (stored.media == "image") != (kind == "image"):
                raise CommandError(
                    f"--{kind} {path}: the file is a{'n image' if stored.media == 'image' else ' clip'}; use --{'image' if stored.media == 'image' else 'clip'}",
                    returncode=2,
                )
            edit["upload"] = stored.id
        record = cli.act(orchestrator.edit_job, job.pk, edits, notes=notes, user=user)  # bad edits: exit 2
        self.stdout.write(
            f"job {job.pk}: edit {record.pk} re-runs {', '.join(record.stages)} ({', '.join(record.items)})"
        )
