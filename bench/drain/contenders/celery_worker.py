"""The module `celery -A` loads in the worker subprocess."""

from bench.drain.contenders.celery_app import make_app
from bench.drain.contenders.common import WorkerEnv, install_ack_hook
from bench.drain.tally import Tally

_env = WorkerEnv.from_environ()
_tally = Tally(_env.tally_path)
install_ack_hook(_tally)
app = make_app(_env, tally=_tally)
