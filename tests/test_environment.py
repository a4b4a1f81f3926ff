"""edgeseg.validate.environment: the machine record every report and benchmark writes."""

from __future__ import annotations

from importlib import metadata

from edgeseg.validate.environment import describe, environment


def test_environment_records_extra_libraries_and_describe_names_the_asked_ones():
    env = environment(threads=3, libraries=("pytest", "no-such-distribution-edgeseg"))
    assert env["threads"] == 3 and env["usable_cpus"] >= 1
    assert env["libraries"]["pytest"] == metadata.version("pytest")
    assert env["libraries"]["no-such-distribution-edgeseg"] is None
    assert env["libraries"]["numpy"] == metadata.version("numpy")  # the standard ones come too

    line = describe(env, ("pytest", "no-such-distribution-edgeseg"))
    assert f"pytest {env['libraries']['pytest']}" in line and f"edgeseg {env['libraries']['edgeseg']}" in line
    assert "numpy" not in line and "no-such-distribution" not in line  # only the asked ones, if installed
    assert "3 thread(s)" in line and env["cpu"] in line and env["created_utc"] in line


def test_describe_reads_a_stored_record_not_this_machine():
    stored = {"cpu": "Some CPU", "usable_cpus": 2, "logical_cpus": 8, "system": "Linux 5", "python": "3.10.1",
              "threads": None, "created_utc": "2020-01-01T00:00:00+00:00",
              "libraries": {"edgeseg": "0.0.1", "torch": "2.0"}}
    assert describe(stored, ("torch",)) == (
        "Some CPU, 2 of 8 CPUs usable, Linux 5, Python 3.10.1; edgeseg 0.0.1, torch 2.0 (2020-01-01T00:00:00+00:00)"
    )
