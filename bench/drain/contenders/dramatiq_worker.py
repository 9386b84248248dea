"""The module the `dramatiq` command loads in the worker subprocess."""

import dramatiq

from bench.drain.contenders.common import WorkerEnv, install_ack_hook
from bench.drain.contenders.dramatiq_app import make_broker
from bench.drain.tally import Tally

_env = WorkerEnv.from_environ()
_tally = Tally(_env.tally_path)
install_ack_hook(_tally)
broker, handle = make_broker(_env, tally=_tally)
dramatiq.set_broker(broker)
