"""installer/install_bundle.py and the document's execution timeout: the files are swapped in
only while the time to test, reload and restore after a failed reload is still left
(ROLLOUT_STARTED_AT + ROLLOUT_EXECUTION_TIMEOUT, each step ROLLOUT_COMMAND_TIMEOUT), so SSM's
kill at the execution timeout never lands between a failed reload and the restore."""

from __future__ import annotations

import time

from tests.unit.test_installer import files_for, node, pki, py  # noqa: F401 - fixtures


def deadline_env(started_ago: int, execution: int, each: int) -> dict[str, str]:
    return {"ROLLOUT_STARTED_AT": str(int(time.time()) - started_ago),
            "ROLLOUT_EXECUTION_TIMEOUT": str(execution), "ROLLOUT_COMMAND_TIMEOUT": str(each)}


def test_too_little_time_left_stops_before_any_file_changes(node, pki):  # noqa: F811
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    node.put_secret(pki["new"])
    # 100 s left; test + reload + reload after restore need 3 x 40 + 1 s
    code, result = node.run("install", node.target(files_for(node), test=py("pass"), reload=py("pass")),
                            extra_env=deadline_env(500, 600, 40))
    assert code == 12, result
    assert result["stage"] == "write" and "nothing changed" in result["error"]
    assert "3 x ROLLOUT_COMMAND_TIMEOUT" in result["error"]
    assert sorted(p.name for p in node.ssl.iterdir()) == ["fullchain.pem"]  # no staged key left behind
    assert (node.ssl / "fullchain.pem").read_text() == "old chain\n"


def test_enough_time_left_installs(node, pki):  # noqa: F811
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node), test=py("pass"), reload=py("pass")),
                            extra_env=deadline_env(10, 600, 120))
    assert code == 0, result
    assert (node.ssl / "privkey.pem").exists()


def test_only_the_commands_the_target_has_count(node, pki):  # noqa: F811
    node.put_secret(pki["new"])
    # 50 s left: a reload-only target needs 2 x 20 + 1 s, which fits; with a test too it would not
    target = node.target(files_for(node), reload=py("pass"))
    code, result = node.run("install", target, extra_env=deadline_env(550, 600, 20))
    assert code == 0, result
    target = node.target(files_for(node), test=py("pass"), reload=py("pass"))
    code, result = node.run("install", target, extra_env=deadline_env(550, 600, 20))
    assert code == 12 and "3 x ROLLOUT_COMMAND_TIMEOUT" in result["error"]


def test_half_given_or_bad_deadline_is_refused(node, pki):  # noqa: F811
    node.put_secret(pki["new"])
    target = node.target(files_for(node), reload=py("pass"))
    for env in ({"ROLLOUT_EXECUTION_TIMEOUT": "600"}, {"ROLLOUT_STARTED_AT": "1700000000"},
                {"ROLLOUT_STARTED_AT": "soon", "ROLLOUT_EXECUTION_TIMEOUT": "600"},
                {"ROLLOUT_STARTED_AT": "1700000000", "ROLLOUT_EXECUTION_TIMEOUT": "0"}):
        code, result = node.run("install", target, extra_env=env)
        assert code == 2 and "ROLLOUT_EXECUTION_TIMEOUT" in result["error"], (env, result)
        assert not (node.ssl / "privkey.pem").exists()


def test_without_a_deadline_the_installer_behaves_as_before(node, pki):  # noqa: F811
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node), reload=py("pass")))
    assert code == 0, result
