"""The command line: the only place that prints errors and maps them to exit codes.

0 ok, 1 build or verification failed, 2 bad recipe or usage, 3 missing environment.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import click

from builder import __version__, hostpaths, pipeline, recipe as recipes, settings
from builder.cache.store import Store, default_root
from builder.errors import IronforgeError, MissingEnvironment, RecipeError, UsageError
from builder.host import accel as accelmod
from builder.host import tools

log = logging.getLogger("ironforge.cli")


@dataclass
class App:
    """Per-invocation settings; passed down instead of globals."""

    cache_dir: Path
    output_dir: Path
    recipes_dir: Path | None
    accel_override: str | None
    debug: bool
    verbose: int
    quiet: bool
    _accel: accelmod.Accel | None = field(default=None, repr=False)
    # directories besides a recipe's own folder it may read host files from
    allow_host_paths: tuple[Path, ...] = ()
    # the remote stage cache (builder/cache/remote), one per process so it warns once
    remote: object | None = None

    @property
    def progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    @property
    def store(self) -> Store:
        return Store(self.cache_dir)

    def accel(self) -> accelmod.Accel:
        """Chosen once per process and announced once."""
        if self._accel is None:
            self._accel = accelmod.choose(self.accel_override)
            log.info(self._accel.notice())
        return self._accel

    def engine(self, offline: bool = False, options: dict | None = None):
        from builder.engine import Engine
        return Engine(store=self.store, accel=self.accel(), progress=self.progress, offline=offline,
                      debug=self.debug, options=options or {}, remote=None if offline else self.remote)


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _report(exc: BaseException, debug: bool) -> int:
    if isinstance(exc, IronforgeError):
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        failure = getattr(exc, "failure", None)
        if failure is not None:
            for label, p in (("serial log", failure.serial_log), ("screenshot", failure.screenshot)):
                if p:
                    click.echo(f"  {label}: {p}", err=True)
        code = exc.exit_code
    else:
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        if not debug:
            click.echo("  (run with --debug for the traceback)", err=True)
        code = 1
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    return code


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ironforge")
@click.option("-v", "--verbose", count=True, help="Explain what is happening (DEBUG logging).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache root (default $IRONFORGE_CACHE or ~/.cache/ironforge).")
@click.option("--output-dir", type=click.Path(path_type=Path), default=None,
              help="Where published images go (default ./output).")
@click.option("--recipes-dir", type=click.Path(path_type=Path), default=None,
              help="Where recipe names are looked up (default ./recipes).")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default=None,
              help="Force the accelerator (default: detect; also $IRONFORGE_ACCEL).")
@click.option("--allow-host-path", "allow_host_path", multiple=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Let recipes read host files under DIR too, not only inside their own folder "
                   "(repeatable; also $IRONFORGE_ALLOW_HOST_PATH, os.pathsep-separated).")
@click.option("--cache-remote", default=None, metavar="oci://HOST[:PORT]/REPO",
              help="Share stages through an OCI registry (also $IRONFORGE_CACHE_REMOTE, or cache.remote "
                   "in ~/.config/ironforge/config.toml; oci+http:// for a registry without TLS). "
                   "See README: Many machines.")
@click.option("--cache-remote-readonly", is_flag=True,
              help="Pull from --cache-remote, never push (also $IRONFORGE_CACHE_REMOTE_READONLY=1, "
                   "or cache.remote_readonly = true in the configuration file).")
@click.pass_context
def cli(ctx, verbose, quiet, debug, cache_dir, output_dir, recipes_dir, accel, allow_host_path,
        cache_remote, cache_remote_readonly):
    """ironforge: build appliance images from recipes and prove they boot."""
    from builder import user_config
    from builder.cache.remote.cache import RemoteCache
    from builder.log import setup
    setup(verbose, quiet)
    ctx.obj = App(cache_dir=cache_dir or default_root(),
                  output_dir=output_dir or Path(os.environ.get("IRONFORGE_OUTPUT", "output")),
                  recipes_dir=recipes_dir, accel_override=accel, debug=debug, verbose=verbose, quiet=quiet,
                  allow_host_paths=(*allow_host_path, *hostpaths.from_env()),
                  remote=RemoteCache.from_options(cache_remote, cache_remote_readonly,
                                                  config=user_config.load()))


pass_app = click.make_pass_decorator(App)


# -- recipes -------------------------------------------------------------------------------------

@cli.group("recipes")
def recipes_cmd():
    """List, validate, show recipes; print the settings reference."""


@recipes_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def recipes_list(app: App, as_json):
    rows = []
    for p in recipes.list_recipes(app.recipes_dir):
        try:
            r = recipes.load(str(p), app.recipes_dir, app.allow_host_paths)
            rows.append({"name": r.name, "arch": r.arch, "os": f"{r.family} {r.release}",
                         "method": r.get("build.method"), "description": r.get("description"), "valid": True})
        except IronforgeError as exc:
            rows.append({"name": p.stem, "valid": False, "error": exc.message})
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        if row["valid"]:
            click.echo(f"{row['name']:<28} {row['arch']:<7} {row['os']:<10} {row['method']:<10} {row['description']}")
        else:
            click.echo(f"{row['name']:<28} INVALID (run `ironforge recipes validate {row['name']}`)")


@recipes_cmd.command("validate")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def recipes_validate(app: App, names, as_json):
    """Validate recipes (all shipped ones when none is named); every problem is reported."""
    targets = list(names) or [str(p) for p in recipes.list_recipes(app.recipes_dir)]
    problems, report = [], []
    for t in targets:
        try:
            r = recipes.load(t, app.recipes_dir, app.allow_host_paths)
            report.append({"recipe": r.name, "ok": True})
            if not as_json:
                click.echo(f"ok  {r.name}")
        except RecipeError as exc:
            problems.extend(exc.problems)
            report.append({"recipe": t, "ok": False, "problems": [p.__dict__ for p in exc.problems]})
            if not as_json:
                click.echo(f"bad {t}", err=True)
                for p in exc.problems:
                    click.echo(f"  {p}", err=True)
    if as_json:
        _emit_json(report)
    if problems:
        raise SystemExit(2)
    if any(not r["ok"] for r in report):
        raise SystemExit(2)


@recipes_cmd.command("show")
@click.argument("name")
@pass_app
def recipes_show(app: App, name):
    """The recipe as ironforge sees it: merged, validated, defaults applied (JSON)."""
    r = recipes.load(name, app.recipes_dir, app.allow_host_paths)
    _emit_json({"name": r.name, "files": [str(p) for p in r.chain], "digest": r.digest,
                "stages": pipeline.stage_names(r), "values": r.values})


@recipes_cmd.command("schema")
@click.option("--json", "as_json", is_flag=True)
def recipes_schema(as_json):
    """The settings reference, generated from the settings table."""
    if as_json:
        _emit_json(settings.schema_json())
    else:
        click.echo(settings.schema_markdown(), nl=False)


# -- plan ----------------------------------------------------------------------------------------

@cli.command("plan")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every recipe in the recipes directory.")
@click.option("--no-verify", is_flag=True, help="Plan without the verify stage.")
@click.option("--offline", is_flag=True, help="Do not look upstream for pins.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--matrix", is_flag=True, help="With --json: one line, a CI matrix of the buildable recipes "
              '({"include":[{"recipe":…,"arch":…}]}).')
@pass_app
def plan_cmd(app: App, names, all_, no_verify, offline, as_json, matrix):
    """Each stage of each recipe, its cache key, and hit or miss with the reason."""
    if matrix and not as_json:
        raise UsageError("--matrix is a JSON output: use it with --json")
    out, rows = [], []
    for r in _targets(app, names, all_):
        rows.append((r.name, r.arch, True))
        entry = {"recipe": r.name, "stages": [], "facts": {}}
        try:
            entry["facts"] = pipeline.plan_facts(r, app.store)
            stages = pipeline.stages_for(r, verify=not no_verify)
            steps = app.engine(offline=offline).plan(r, stages)
            entry["stages"] = [{"stage": s.stage.name, "version": s.stage.version, "key": s.key,
                                "hit": s.hit, "remote": s.remote, "reason": s.reason,
                                **({"parts": [vars(p).copy() for p in s.parts]} if s.parts else {})}
                               for s in steps]
        except UsageError as exc:  # a stage not implemented yet: still list them all
            entry["stages"] = [{"stage": n, "key": None, "hit": False, "reason": exc.message}
                               for n in pipeline.stage_names(r, verify=not no_verify)]
        except IronforgeError as exc:
            # --all is an overview: a recipe that lacks user inputs (Windows media) is listed with
            # what it lacks; named on its own, the same lack is an error (exit 2)
            if not all_ or exc.exit_code != 2:
                raise
            why = ("needs " + ", ".join(p.key for p in exc.problems) if isinstance(exc, RecipeError)
                   else exc.message)
            entry["stages"] = [{"stage": n, "key": None, "hit": False, "reason": why}
                               for n in pipeline.stage_names(r, verify=not no_verify)]
            rows[-1] = (r.name, r.arch, False)
        out.append(entry)
    if matrix:
        from builder.ci.matrix import ci_matrix, to_line
        click.echo(to_line(ci_matrix(rows)))
        return
    if as_json:
        _emit_json(out)
        return
    for entry in out:
        click.echo(f"{entry['recipe']}:")
        for k, v in entry["facts"].items():
            for line in (v if isinstance(v, list) else [v]):
                click.echo(f"  {k}: {line}")
        for s in entry["stages"]:
            key = (s["key"] or "-")[:12]
            state = "hit " if s["hit"] else "pull" if s.get("remote") else "miss"
            click.echo(f"  {s['stage']:<10} {key:<12} {state}  {'' if s['hit'] else s['reason']}")
            for p in [] if s["hit"] or s.get("remote") else s.get("parts", []):   # what a build will make
                click.echo(f"    {p['name']:<18} {p['key'][:12]:<12} {'hit ' if p['hit'] else 'miss'}  "
                           f"{'' if p['hit'] else p['reason']}")


def _targets(app: App, names, all_) -> list:
    if all_:
        names = [str(p) for p in recipes.list_recipes(app.recipes_dir)]
    if not names:
        raise UsageError("name at least one recipe, or use --all")
    loaded, problems = [], []
    for n in names:
        try:
            loaded.append(recipes.load(n, app.recipes_dir, app.allow_host_paths))
        except RecipeError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeError(problems)
    return loaded


# -- build ---------------------------------------------------------------------------------------

def build_one(app: App, r, force: bool, verify: bool, offline: bool, options: dict) -> dict:
    from builder.cache.lease import Lease
    stages = pipeline.stages_for(r, verify=verify)
    engine = app.engine(offline=offline, options=options)
    with Lease(app.store) as lease:  # the stages stay pinned against `cache gc` until published
        result = engine.run(r, stages, force=force, lease=lease)
        verification = result.artifacts["verify"].data if "verify" in result.artifacts else None
        # a versioned output folder (ironforge rebuild) gets a new version; any other as before
        from builder.rebuild.versions import publish_output
        out = publish_output(result, app.output_dir, engine.accel, verification, app.store)
    hits = sum(s.hit for s in result.steps)
    return {"recipe": r.name, "ok": True, "output": str(out),
            "image": str(out / f"{r.name}.qcow2"), "cached_stages": hits, "stages": len(result.steps),
            "verification": verification or {"status": "skipped"}}


@cli.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Build every recipe in the recipes directory.")
@click.option("--force", is_flag=True, help="Re-run every stage even when cached (into new cache entries: a cached one is never replaced).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, help="Recipes built in parallel.")
@click.option("--no-verify", is_flag=True, help="Skip the boot verification stage.")
@click.option("--offline", is_flag=True, help="Use the cache only; no network.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write the HTML verification report here (default <output-dir>/report.html).")
@click.option("--junit", type=click.Path(path_type=Path), default=None,
              help="Write the run's JUnit XML here (one test case per recipe).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def build_cmd(app: App, names, all_, force, jobs, no_verify, offline, html_path, junit, as_json):
    """Build recipes into output/<name>/, verified to boot unless --no-verify."""
    targets = _targets(app, names, all_)
    app.accel()
    from builder.cache.sweep import sweep
    sweep(app.store, app.output_dir)  # leftovers of killed runs
    results, failures = [], []

    def one(r):
        try:
            return build_one(app, r, force, not no_verify, offline, {})
        except IronforgeError as exc:
            return {"recipe": r.name, "ok": False, "error": exc.message, "hint": exc.hint,
                    "exit_code": exc.exit_code, "_exc": exc}

    if jobs == 1 or len(targets) == 1:
        results = [one(r) for r in targets]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one, targets))
    failures = [r for r in results if not r["ok"]]
    from builder.runner import html_report
    verdicts = html_report.results_from_build(results)
    report = html_report.write(html_path or app.output_dir / "report.html", verdicts, title="ironforge build")
    log.info("report: %s", report)
    if junit:
        from builder.runner.report import write_junit
        write_junit(verdicts, junit)
    if as_json:
        _emit_json([{k: v for k, v in r.items() if k != "_exc"} for r in results])
    else:
        for r in results:
            if r["ok"]:
                v = r["verification"]
                verdict = ("verified" if v.get("passed") or v.get("status") == "passed"
                           else "not verified (--no-verify)" if v.get("status") == "skipped" else "verify: see manifest")
                click.echo(f"{r['recipe']}: {r['image']}  ({r['cached_stages']}/{r['stages']} stages cached, {verdict})")
    if len(failures) == 1 and len(results) == 1:
        raise failures[0]["_exc"]
    if failures:
        for f in failures:
            click.echo(f"error: {f['recipe']}: {f['error']}", err=True)
            if f.get("hint"):
                click.echo(f"  hint: {f['hint']}", err=True)
        raise SystemExit(max(f["exit_code"] for f in failures))


# -- rebuild / schedule ----------------------------------------------------------------------------

def _version_report(folder: Path, result, changes: dict) -> None:
    """Each published version carries its own report.html (the rebuild's verification), written
    before the version is sealed, so the page and the image it describes are published together."""
    from builder.runner import html_report
    verify = result.artifacts.get("verify")
    if verify is not None and verify.data:
        html_report.write(folder / "report.html", html_report.results_from_build(
            [{"recipe": result.recipe.name, "ok": True, "verification": verify.data}]),
            title=f"ironforge rebuild {result.recipe.name} {changes.get('version', '')}".rstrip())


@cli.command("rebuild")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every recipe in the recipes directory (those lacking "
              "user inputs, such as Windows media, are listed as skipped).")
@click.option("--keep", type=click.IntRange(1, 100000), default=5, show_default=True,
              help="Versions kept per recipe (the one latest names is never deleted).")
@click.option("--dry-run", is_flag=True, help="Say what would rebuild and why; build and publish nothing.")
@click.option("--no-wait", is_flag=True, help="If another rebuild holds the output folder, exit 3 at once.")
@click.option("--no-verify", is_flag=True, help="Skip the boot verification stage.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rebuild_cmd(app: App, names, all_, keep, dry_run, no_wait, no_verify, as_json):
    """Rebuild what changed upstream into output/<name>/<version>/ and flip output/<name>/latest."""
    from builder.rebuild.command import rebuild_one, render
    targets = _targets(app, names, all_)
    app.accel()
    from builder.cache.sweep import sweep
    sweep(app.store, app.output_dir)
    outcomes, failures = [], []
    for r in targets:
        try:
            stages = pipeline.stages_for(r, verify=not no_verify)
        except IronforgeError as exc:
            if not all_ or exc.exit_code != 2:
                raise
            outcomes.append({"recipe": r.name, "status": "skipped", "reason": (
                "needs " + ", ".join(p.key for p in exc.problems) if isinstance(exc, RecipeError) else exc.message)})
            continue
        try:
            o = rebuild_one(app.engine(), r, stages, app.output_dir, keep=keep, dry_run=dry_run,
                            wait=not no_wait, report=_version_report)
            outcomes.append(o.to_dict())
            if not as_json:
                for line in render(o):
                    click.echo(line)
        except IronforgeError as exc:
            if len(targets) == 1:
                raise
            failures.append(exc)
            outcomes.append({"recipe": r.name, "status": "failed", **exc.to_dict()})
    if as_json:
        _emit_json(outcomes)
    else:
        for o in outcomes:
            if o["status"] == "skipped":
                click.echo(f"{o['recipe']}: skipped ({o['reason']})")
    for o in (o for o in outcomes if o["status"] == "failed"):
        click.echo(f"error: {o['recipe']}: {o['message']}", err=True)
        if o.get("hint"):
            click.echo(f"  hint: {o['hint']}", err=True)
    if failures:
        raise SystemExit(max(f.exit_code for f in failures))


@cli.group("schedule")
def schedule_cmd():
    """Run `ironforge rebuild` on a timer."""


@schedule_cmd.command("systemd")
@click.argument("names", nargs=-1)
@click.option("--user", is_flag=True, help="User units (~/.config/systemd/user) instead of system units.")
@click.option("--on-calendar", default="daily", show_default=True, help="When to run (systemd.time(7)).")
@click.option("--output-dir", "rebuild_output", type=click.Path(path_type=Path), default=None,
              help="Where the scheduled rebuild publishes (default: the global --output-dir).")
@click.option("--unit-dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the units (default /etc/systemd/system, or the user unit folder).")
@click.option("--keep", type=click.IntRange(1, 100000), default=5, show_default=True)
@click.option("--no-verify", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def schedule_systemd_cmd(app: App, names, user, on_calendar, rebuild_output, unit_dir, keep, no_verify, as_json):
    """Write ironforge-rebuild.service and .timer (rebuild RECIPEs, or --all)."""
    from builder import schedule
    spec = schedule.check_calendar(on_calendar)
    argv = schedule.ironforge_argv() + ["--cache-dir", str(app.cache_dir.resolve()),
                                        "--output-dir", str((rebuild_output or app.output_dir).resolve())]
    # the recipes this shell would find now, not those of the unit's working directory
    argv += ["--recipes-dir", str((app.recipes_dir or recipes.default_recipes_dir()).resolve())]
    argv += [a for d in app.allow_host_paths for a in ("--allow-host-path", str(Path(d).resolve()))]
    plan = schedule.Plan(user=user, on_calendar=spec, workdir=schedule.PROJECT_ROOT, environment={},
                         command=argv + schedule.rebuild_args(list(names), keep, no_verify))
    files = schedule.write(plan, unit_dir or schedule.unit_dir(user))
    if as_json:
        _emit_json({"files": [str(f) for f in files], "on_calendar": spec, "exec": plan.command,
                    "enable": schedule.enable_hint(plan)})
    else:
        for f in files:
            click.echo(f"wrote {f}")
        click.echo(f"runs: {schedule.describe(plan)}")
        click.echo(f"when: {spec}")
        click.echo(f"enable: {schedule.enable_hint(plan)}")


# -- convert -------------------------------------------------------------------------------------

@cli.command("convert")
@click.argument("srcs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Name of the converted guest (default: from the source).")
@click.option("--arch", default=None, help="Guest arch (default: what inspection finds).")
@click.option("--dry-run", is_flag=True, help="Check the sources, inspect the guest read-only and print the planned changes; write nothing.")
@click.option("--import-only", is_flag=True, help="Stop after the import stage (exit 0).")
@click.option("--no-verify", is_flag=True, help="Skip the boot verification stage.")
@click.option("--formats", "formats", multiple=True,
              help="Export formats (repeat, or comma-separate; default qcow2,libvirt): see `ironforge export`.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def convert_cmd(app: App, srcs, name, arch, dry_run, import_only, no_verify, formats, as_json):
    """Convert a foreign VM (disk, OVA, .vmx, libvirt XML, ploop) or a container rootfs."""
    from converters import command
    opts = command.options(list(srcs), name)
    if dry_run:
        # the cached inspect facts when there is a cache; a dry run never creates one
        engine = app.engine(options=opts) if app.cache_dir.is_dir() else None
        plan = command.dry_run(list(srcs), name, accel=app.accel(), engine=engine, arch=arch)
        if as_json:
            _emit_json(plan)
        else:
            click.echo(f"{plan['name']}: {plan['kind']}")
            for step in plan["steps"]:
                click.echo(f"  {step}")
        return
    if import_only:
        res = command.run_import(app.engine(options=opts), list(srcs), name, arch)
        if as_json:
            _emit_json(res)
        else:
            click.echo(f"{res['name']}: imported {res['kind']} ({'cached' if res['cached'] else 'done'}) "
                       f"into {res['import']['dir']}")
            for note in (res["vm"] or {}).get("notes", []) + res["skipped"][:20]:
                click.echo(f"  note: {note}")
        return
    fmts = [f.strip() for item in formats for f in item.split(",") if f.strip()] or None
    r = command.recipe_from_inspection(app.engine(options=opts), list(srcs), name, arch, fmts)
    res = build_one(app, r, False, not no_verify, False, opts)
    res["conversion"] = command.published_summary(Path(res["output"]))
    if as_json:
        _emit_json(res)
    else:
        for line in res["conversion"]:
            click.echo(f"  {line}")
        v = res["verification"]
        click.echo(f"{res['recipe']}: {res['image']}  ({res['cached_stages']}/{res['stages']} stages cached, "
                   f"{'verified' if v.get('passed') or v.get('status') == 'passed' else 'not verified' if v.get('status') == 'skipped' else 'verify: see manifest'})")


# -- export --------------------------------------------------------------------------------------

@cli.command("export")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--format", "-f", "formats", multiple=True, required=True,
              help="Format to write (repeat, or comma-separate): qcow2, raw, vmdk, ova, vhdx, vhd-azure, vdi, "
                   "gce, vagrant-libvirt, libvirt.")
@click.option("--output-dir", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where <name>/ is written (default: the global --output-dir).")
@click.option("--name", default=None, help="Output name (default: the image file's name).")
@click.option("--memory", type=click.IntRange(128, 4 << 20), default=1024, help="VM memory in MiB.")
@click.option("--cpus", type=click.IntRange(1, 1024), default=1, help="VM vCPUs.")
@click.option("--firmware", type=click.Choice(["bios", "uefi"]), default="bios")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, help="Formats written in parallel.")
@click.option("--compression", type=click.Choice(["zstd", "zlib", "none"]), default="zstd",
              help="The qcow2's compression: zstd (QEMU 5.1+), zlib (any qcow2 reader) or none.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def export_cmd(app: App, image, formats, out_dir, name, memory, cpus, firmware, jobs, compression, as_json):
    """Write an existing image in other formats, with SHA256SUMS and an SBOM beside them."""
    from builder.exports.command import export_image
    fmts = [f.strip() for item in formats for f in item.split(",") if f.strip()]
    res = export_image(image, fmts, out_dir or app.output_dir, name=name, memory_mib=memory, cpus=cpus,
                       firmware=firmware, jobs=jobs, compress=compression != "none",
                       compression=compression if compression != "none" else "zstd")
    if as_json:
        _emit_json(res)
    else:
        for fmt, path in res["files"].items():
            click.echo(f"{fmt}: {path}")


# -- fetch ---------------------------------------------------------------------------------------

@cli.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--url", help="Fetch one URL (needs --sha256 or --sha512).")
@click.option("--sha256", "sha256", help="Expected SHA-256 of --url.")
@click.option("--sha512", "sha512", help="Expected SHA-512 of --url.")
@click.option("--offline", is_flag=True, help="Use the cache only; fail if something is missing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def fetch_cmd(app: App, names, url, sha256, sha512, offline, as_json):
    """Fetch and verify every source of the recipes, or one --url."""
    fetch = _fetch_module()
    if url:
        if names:
            raise UsageError("give either recipes or --url, not both")
        if not (sha256 or sha512):
            raise UsageError("--url needs --sha256 or --sha512: a download is trusted only by its digest")
        path = fetch.fetch_url(app.store, url, sha256=sha256, sha512=sha512, offline=offline,
                               progress=app.progress)
        if as_json:
            _emit_json({"url": url, "path": str(path)})
        else:
            click.echo(str(path))
        return
    out = []
    for r in _targets(app, names, False):
        files = fetch.fetch_sources(app.store, r, offline=offline, progress=app.progress)
        for f in files:
            d = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(f).items()}
            d["recipe"] = r.name
            out.append(d)
            if not as_json:
                click.echo(f"{r.name}: {getattr(f, 'name', '')} {f.path}")
        if not files and not as_json:
            click.echo(f"{r.name}: no sources to fetch")
    if as_json:
        _emit_json(out)


def _fetch_module():
    try:
        import builder.fetch as fetch
    except ModuleNotFoundError:
        from builder.errors import NotImplementedYet
        raise NotImplementedYet("fetch is not implemented yet") from None
    return fetch


# -- verify / run ----------------------------------------------------------------------------------

def _verify_targets(app: App, items, opts: dict) -> list:
    from builder.runner.verify import VerifyTarget
    from builder.stages.verify import target_for
    targets, problems = [], []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix != ".toml":
            t = VerifyTarget(image=p, name=p.stem)
            if opts.get("verify_checks"):
                from builder.runner.checks import resolve_checks
                t = dataclasses.replace(t, checks=tuple(resolve_checks(None, opts["verify_checks"])))
            for k, attr in (("verify_timeout", "timeout"), ("verify_stall", "stall")):
                if opts.get(k):
                    t = dataclasses.replace(t, **{attr: float(opts[k])})
            targets.append(t)
            continue
        try:
            r = recipes.load(item, app.recipes_dir, app.allow_host_paths)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        image = app.output_dir / r.name / f"{r.name}.qcow2"
        if not image.is_file():
            raise UsageError(f"{item}: no built image at {image}", hint=f"run: ironforge build {r.name}")
        targets.append(target_for(r, image, opts))
    if problems:
        raise RecipeError(problems)
    from builder.runner.provenance import beside
    return [dataclasses.replace(t, **beside(t.image)) for t in targets]


@cli.command("verify")
@click.argument("items", nargs=-1, required=True)
@click.option("--parallel", "-p", type=click.IntRange(1, 32), default=2, show_default=True,
              help="Guests booted at once (32-bit and 64-bit side by side).")
@click.option("--timeout", type=click.IntRange(10, 86400), default=None, help="Overall seconds per image.")
@click.option("--stall", type=click.IntRange(5, 86400), default=None, help="Fail after this many silent seconds.")
@click.option("--check", "checks", multiple=True, help="Add a check (NAME) or relax one (-NAME).")
@click.option("--junit", type=click.Path(path_type=Path), default=None, help="Write JUnit XML here.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write the HTML report here (fleet table, boot timelines, failures with screenshots).")
@click.option("--evidence-dir", type=click.Path(path_type=Path), default=None,
              help="Where serial logs and screenshots go (default output/verify/<time>).")
@click.option("--via", type=click.Choice(["qemu", "libvirt"]), default="qemu", show_default=True,
              help="libvirt: boot our domain XML through a private libvirt session daemon.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def verify_cmd(app: App, items, parallel, timeout, stall, checks, junit, html_path, evidence_dir, via, as_json):
    """Boot images (or recipes' published images) and prove they work."""
    from builder.runner.report import render_table, to_json, write_junit
    from builder.runner.verify import verify_fleet
    opts = {"verify_timeout": timeout, "verify_stall": stall, "verify_checks": list(checks)}
    targets = [dataclasses.replace(t, via=via) for t in _verify_targets(app, items, opts)]
    out = evidence_dir or app.output_dir / "verify" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = verify_fleet(targets, parallel=parallel, accel=app.accel(), out_dir=out)
    if junit:
        write_junit(results, junit)
    if html_path:
        from builder.runner.html_report import write as write_html
        write_html(html_path, results)
    if as_json:
        click.echo(to_json(results))
    else:
        click.echo(render_table(results))
        for r in results:
            if not r.ok:
                click.echo(f"{r.name}: {r.message}", err=True)
                for line in r.serial_tail[-10:]:
                    click.echo(f"    {line}", err=True)
                if r.serial_log:
                    click.echo(f"  serial log: {r.serial_log}", err=True)
                if r.screenshot:
                    click.echo(f"  screenshot: {r.screenshot}", err=True)
    if not all(r.ok for r in results):
        raise SystemExit(1)


@cli.command("run")
@click.argument("image")
@click.option("--arch", default=None, help="Guest arch (default: from the recipe or by inspection).")
@click.option("--no-snapshot", is_flag=True, help="Write changes back to the image (default: snapshot).")
@click.option("--memory", type=click.IntRange(128, 65536), default=1024, show_default=True)
@click.option("--cpus", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--firmware", type=click.Choice(["bios", "uefi"]), default=None)
@click.option("--copy", "copy_to", type=click.Path(path_type=Path), default=None,
              help="Copy the image to this new file and boot the copy writable (implies --no-snapshot).")
@pass_app
def run_cmd(app: App, image, arch, no_snapshot, memory, cpus, firmware, copy_to):
    """Boot an image with the serial console on this terminal (quit: Ctrl-A x)."""
    from builder.private_image import require_private
    from builder.runner.interactive import run_interactive
    p = Path(image)
    if not p.is_file():
        r = recipes.load(image, app.recipes_dir, app.allow_host_paths)
        p = app.output_dir / r.name / f"{r.name}.qcow2"
        if not p.is_file():
            raise UsageError(f"{image}: no built image at {p}", hint=f"run: ironforge build {r.name}")
        arch = arch or r.arch
        firmware = firmware or r.get("firmware")
    if copy_to is not None:
        from builder.clone import clone_file
        from builder.private_image import check_copy_destination
        check_copy_destination(copy_to, app.cache_dir, app.output_dir)
        clone_file(p, copy_to)
        p, no_snapshot = copy_to, True
    if no_snapshot:
        require_private(p, app.cache_dir, app.output_dir)
    rc = run_interactive(p, arch, app.accel(), snapshot=not no_snapshot, firmware=firmware or "bios",
                         memory_mb=memory, cpus=cpus)
    raise SystemExit(rc)


# -- cache ---------------------------------------------------------------------------------------

@cli.group("cache")
def cache_cmd():
    """Disk use of the cache, and removing what nothing needs."""


@cache_cmd.command("du")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cache_du(app: App, as_json):
    """Sizes per stage and per recipe (allocated blocks, hard links counted once)."""
    from builder.cache.usage import render, scan
    usage = scan(app.store)
    if as_json:
        _emit_json(usage.to_dict())
    else:
        click.echo(render(usage))


@cache_cmd.command("gc")
@click.option("--keep-days", type=click.FloatRange(0, 36500), default=30, show_default=True,
              help="Keep every stage used, and each recipe's latest build, within this many days.")
@click.option("--max-size", default=None, help="Evict least recently used unkept stages until the cache is "
              "under this size (e.g. 20G); without it every unkept one goes.")
@click.option("--dry-run", is_flag=True, help="List what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cache_gc(app: App, keep_days, max_size, dry_run, as_json):
    """Remove what no published output (--output-dir) or recent build needs; safe beside builds."""
    from builder.cache.gc import gc, parse_size, render
    limit = parse_size(max_size) if max_size is not None else None
    report = gc(app.store, app.output_dir, keep_days=keep_days, max_size=limit, dry_run=dry_run)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(render(report))


# -- inject-drivers ------------------------------------------------------------------------------

@cli.command("inject-drivers")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--virtio-win", "virtio_win", required=True, type=click.Path(path_type=Path),
              help="virtio-win ISO or unpacked directory.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="New qcow2 to write (default IMAGE-virtio.qcow2); IMAGE stays untouched.")
@click.option("--in-place", is_flag=True, help="Edit IMAGE itself (every check runs before the first write).")
@click.option("--dry-run", is_flag=True, help="Open everything read-only; report what would change.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def inject_drivers_cmd(app: App, image, virtio_win, output, in_place, dry_run, as_json):
    """Inject virtio drivers into a Windows disk offline (files, registry, first-boot install)."""
    from builder.windows.inject_command import inject_drivers, summary
    d = inject_drivers(image, virtio_win, app.accel(), output=output, in_place=in_place, dry_run=dry_run)
    if as_json:
        _emit_json(d)
    else:
        for line in summary(d):
            click.echo(line)


# -- ci ------------------------------------------------------------------------------------------

@cli.command("ci")
@click.argument("system", type=click.Choice(["github", "gitlab"]))
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the workflow here (default: print it).")
@click.option("--cron", default=None, help="github: when the scheduled run starts (five cron fields, UTC).")
@click.option("--from-matrix", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="gitlab: write the child pipeline for this `plan --json --matrix` output instead.")
def ci_cmd(system, output, cron, from_matrix):
    """A CI workflow: scheduled and on-demand builds, one boot-verified job per recipe."""
    from builder.ci import command
    text = command.render(system, cron=cron, from_matrix=from_matrix)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(str(command.write(text, output)))


# -- doctor --------------------------------------------------------------------------------------

DOCTOR_TOOLS = ("qemu-system-x86_64", "qemu-system-i386", "qemu-img", "mmdebstrap", "gpgv", "sfdisk",
                "mke2fs", "xorriso", "cpio", "debconf-set-selections", "wiminfo")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def doctor_cmd(app: App, as_json):
    """What this machine can do: accelerator and why, tools, Python modules, cache."""
    acc = accelmod.choose(app.accel_override)
    report = {"accel": {"mode": acc.mode, "reason": acc.reason}, "tools": {}, "python": {}, "missing": []}
    for t in DOCTOR_TOOLS:
        path = tools.which(t)
        report["tools"][t] = {"path": path, "version": tools.version(t) if path else None,
                              "package": tools.PACKAGES.get(t, t)}
        if not path:
            report["missing"].append(f"{t} (apt-get install {tools.PACKAGES.get(t, t)})")
    for mod, pkg in (("guestfs", "python3-guestfs"), ("hivex", "python3-hivex"), ("pycdlib", "pycdlib"),
                     ("qemu.qmp", "qemu.qmp"), ("defusedxml", "python3-defusedxml")):
        try:
            __import__(mod)
            report["python"][mod] = "ok"
        except ImportError:
            report["python"][mod] = "missing"
            report["missing"].append(f"python module {mod} ({pkg})")
    report["libguestfs"] = tools.libguestfs_version() if report["python"]["guestfs"] == "ok" else None
    cache = app.cache_dir
    probe = cache if cache.exists() else cache.parent if cache.parent.exists() else Path("/")
    report["cache"] = {"dir": str(cache), "free_bytes": shutil.disk_usage(probe).free}
    if as_json:
        _emit_json(report)
    else:
        click.echo(f"accelerator: {acc.mode.upper()} — {acc.reason}")
        for t, d in report["tools"].items():
            click.echo(f"  {t:<24} {d['version'] or '-':<24} {d['path'] or 'MISSING: apt-get install ' + d['package']}")
        for m, s in report["python"].items():
            click.echo(f"  python {m:<17} {s}")
        click.echo(f"  libguestfs               {report['libguestfs'] or 'MISSING'}")
        click.echo(f"cache: {cache} ({report['cache']['free_bytes'] / 2**30:.1f} GiB free)")
    if report["missing"]:
        raise MissingEnvironment("missing: " + "; ".join(report["missing"]), hint="run: make setup")


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="ironforge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        raise SystemExit(_report(exc, debug)) from None
    raise SystemExit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
