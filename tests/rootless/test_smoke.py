"""A smoke subset of the integration suite, rootless, against both monitors (see conftest)."""
from __future__ import annotations

from tests.integration.test_exec import ctr, test_exec_attached_output, test_exec_exit_codes
from tests.integration.test_logs import test_logs_follow_until_exit
from tests.integration.test_pods import test_kube_play, test_pod_with_infra
from tests.integration.test_run import test_run_rm_stdout_stderr, test_run_stdin_pipe
from tests.integration.test_tty import test_attach_detach, test_exec_it, tmux

__all__ = [
           "ctr",
           "test_attach_detach",
           "test_exec_attached_output",
           "test_exec_exit_codes",
           "test_exec_it",
           "test_kube_play",
           "test_logs_follow_until_exit",
           "test_pod_with_infra",
           "test_run_rm_stdout_stderr",
           "test_run_stdin_pipe",
           "tmux",
]
