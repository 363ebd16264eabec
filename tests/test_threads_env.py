"""statgan.runtime.threads: the OpenMP waiting defaults go into the environment where the user has
not chosen, never over a user's value, and early enough for torch's OpenMP runtime to read them."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from statgan.runtime import threads


def test_sets_the_defaults_in_an_empty_environment():
    env = {}
    chosen = threads.configure_openmp_env(env)
    assert chosen == dict(threads.DEFAULTS)
    assert env == dict(threads.DEFAULTS)
    assert all(isinstance(v, str) for v in env.values())


@pytest.mark.parametrize("name", ["GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
@pytest.mark.parametrize("value", ["300000", "0", ""])
def test_never_overrides_a_value_the_user_set(name, value):
    env = {name: value, "PATH": "/bin"}
    chosen = threads.configure_openmp_env(env)
    assert env[name] == value
    assert name not in chosen
    assert env["PATH"] == "/bin"
    other = ({"GOMP_SPINCOUNT", "KMP_BLOCKTIME"} - {name}).pop()
    assert env[other] == chosen[other] == threads.DEFAULTS[other]  # the other runtime's default still applies


@pytest.mark.parametrize("policy", ["ACTIVE", "PASSIVE", "active"])
def test_a_user_wait_policy_is_not_overruled_by_a_spin_count(policy):
    # libgomp lets GOMP_SPINCOUNT win over OMP_WAIT_POLICY: setting one beside the user's policy
    # would silently undo it
    env = {"OMP_WAIT_POLICY": policy}
    assert threads.configure_openmp_env(env) == {}
    assert env == {"OMP_WAIT_POLICY": policy}


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_opt_out_sets_nothing(value):
    env = {threads.OPT_OUT: value}
    assert threads.configure_openmp_env(env) == {}
    assert env == {threads.OPT_OUT: value}


def test_opt_out_with_another_value_still_sets_the_defaults():
    env = {threads.OPT_OUT: "1"}
    assert threads.configure_openmp_env(env) == dict(threads.DEFAULTS)


def test_second_call_sets_nothing_more():
    env = {}
    threads.configure_openmp_env(env)
    assert threads.configure_openmp_env(env) == {}


def test_defaults_to_os_environ(monkeypatch):
    for name in (*threads.DEFAULTS, "OMP_WAIT_POLICY", threads.OPT_OUT):
        monkeypatch.delenv(name, raising=False)
    chosen = threads.configure_openmp_env()
    assert chosen == dict(threads.DEFAULTS)
    assert all(os.environ[k] == v for k, v in chosen.items())


def _fresh_python(code, env_update):
    env = {k: v for k, v in os.environ.items() if k not in (*threads.DEFAULTS, "OMP_WAIT_POLICY", threads.OPT_OUT)}
    env.update(env_update)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_module_does_not_import_torch_and_configures_before_it():
    # in a fresh interpreter: importing the module and configuring leaves torch unimported (so that
    # libgomp, loaded by ``import torch``, reads the values), and a later torch import sees them
    code = (
        "import json, os, sys\n"
        "from statgan.runtime import threads\n"
        "before = 'torch' in sys.modules or threads.too_late()\n"
        "chosen = threads.configure_openmp_env()\n"
        "import torch\n"
        "print(json.dumps({'torch_before': before, 'chosen': chosen, 'too_late_after': threads.too_late(),\n"
        "                  'env': {k: os.environ.get(k) for k in chosen}}))\n"
    )
    res = _fresh_python(code, {})
    assert res["torch_before"] is False
    assert res["chosen"] == dict(threads.DEFAULTS)
    assert res["env"] == dict(threads.DEFAULTS)
    assert res["too_late_after"] is True


def test_user_value_survives_into_a_fresh_process():
    code = (
        "import json, os\n"
        "from statgan.runtime import threads\n"
        "chosen = threads.configure_openmp_env()\n"
        "print(json.dumps({'chosen': chosen, 'spin': os.environ.get('GOMP_SPINCOUNT'),\n"
        "                  'block': os.environ.get('KMP_BLOCKTIME')}))\n"
    )
    res = _fresh_python(code, {"GOMP_SPINCOUNT": "123"})
    assert res["spin"] == "123"
    assert "GOMP_SPINCOUNT" not in res["chosen"]
    assert res["block"] == threads.DEFAULTS["KMP_BLOCKTIME"]


# ---- ThreadTuner: the thread count chosen from measured tick times ---------------------------------


class FakeTorch:
    """A clock and a thread setting: each tick's interval costs what the current count costs."""

    def __init__(self, threads, cost, waiting=None):
        # waiting: {threads: this process's threads waiting for a CPU on average}; None: not known
        self.threads, self.cost, self.t, self.sets = threads, dict(cost), 0.0, []
        self.waiting, self.delay = waiting, 0.0

    def set(self, n):
        self.threads = n
        self.sets.append(n)

    def tuner(self, **kw):
        run_delay = (lambda: self.delay) if self.waiting is not None else None
        return threads.ThreadTuner(clock=lambda: self.t, get_threads=lambda: self.threads, set_threads=self.set,
                                   run_delay=run_delay, environ={}, **kw)

    def run(self, tuner, ticks, change_at=None, new_cost=None, new_waiting=None):
        for i in range(ticks):
            if change_at is not None and i == change_at:
                self.cost = dict(new_cost)
                self.waiting = dict(new_waiting) if new_waiting is not None else self.waiting
            tuner.tick()
            self.t += self.cost[self.threads]
            if self.waiting is not None:
                self.delay += self.cost[self.threads] * self.waiting[self.threads]


def test_tuner_keeps_the_configured_count_when_it_is_faster():
    fake = FakeTorch(2, {2: 0.05, 1: 0.08})
    tuner = fake.tuner()
    fake.run(tuner, 400)
    assert fake.threads == 2
    assert [h[1] for h in tuner.history] and all(h[1] == 2 for h in tuner.history)
    # one-thread ticks are the probes only: window + 1 settling tick per measurement
    assert fake.sets.count(1) == len(tuner.history)


def test_tuner_goes_to_one_thread_when_that_is_faster_and_back_when_the_neighbour_leaves():
    fake = FakeTorch(2, {2: 0.20, 1: 0.08})  # two threads beside a busy process
    tuner = fake.tuner(hold=16, max_hold=64)
    fake.run(tuner, 60)
    assert fake.threads == 1
    first = tuner.history[0]
    assert first[1] == 1 and first[2] == "start" and first[3][2] > first[3][1]
    fake.run(tuner, 300, change_at=0, new_cost={2: 0.05, 1: 0.08})  # the neighbour is gone
    assert fake.threads == 2


def test_tuner_reacts_to_drift_before_the_hold_ends():
    fake = FakeTorch(2, {2: 0.05, 1: 0.08})
    tuner = fake.tuner(hold=1000, max_hold=1000)
    fake.run(tuner, 50)
    assert fake.threads == 2 and len(tuner.history) == 1
    fake.run(tuner, 60, change_at=0, new_cost={2: 0.30, 1: 0.09})  # a neighbour arrives
    assert fake.threads == 1
    assert tuner.history[-1][2].startswith("drift")


def test_tuner_ignores_single_slow_ticks():
    # every 16th tick is slow (a lazy penalty), two threads are still faster
    fake = FakeTorch(2, {2: 0.05, 1: 0.08})
    tuner = fake.tuner(hold=16, max_hold=16)
    for i in range(400):
        tuner.tick()
        fake.t += fake.cost[fake.threads] * (6 if i % 16 == 0 else 1)
    assert all(h[1] == 2 for h in tuner.history)


def test_tuner_tries_nothing_while_no_thread_waits_for_a_cpu():
    # the kernel says the cores are free: one thread cannot be faster, so it is never tried
    fake = FakeTorch(2, {2: 0.05, 1: 0.08}, waiting={2: 0.01, 1: 0.0})
    tuner = fake.tuner(hold=16, max_hold=64)
    fake.run(tuner, 1000)
    assert fake.sets == [] and fake.threads == 2
    assert len(tuner.history) == 1 and "threads waiting" in tuner.history[0][2]


def test_tuner_compares_when_threads_wait_and_goes_back_after_the_neighbour_left():
    fake = FakeTorch(2, {2: 0.05, 1: 0.08}, waiting={2: 0.01, 1: 0.0})
    tuner = fake.tuner(hold=16, max_hold=64)
    fake.run(tuner, 50)
    assert fake.threads == 2 and fake.sets == []
    # a neighbour arrives: two threads wait (and are slower); same-speed case included via waiting alone
    fake.run(tuner, 100, change_at=0, new_cost={2: 0.07, 1: 0.06}, new_waiting={2: 0.6, 1: 0.0})
    assert fake.threads == 1
    to_one = next(h for h in tuner.history if h[1] == 1)
    assert "threads waiting" in to_one[2] and set(to_one[3]) == {1, 2}
    fake.run(tuner, 400, change_at=0, new_cost={2: 0.05, 1: 0.08}, new_waiting={2: 0.01, 1: 0.0})
    assert fake.threads == 2


def test_tuner_with_one_thread_does_nothing():
    fake = FakeTorch(1, {1: 0.05})
    tuner = fake.tuner()
    fake.run(tuner, 200)
    assert fake.sets == [] and tuner.history == [] and not tuner.active


def test_tuner_opt_out_and_bad_arguments():
    fake = FakeTorch(2, {2: 0.20, 1: 0.08})
    tuner = threads.ThreadTuner(clock=lambda: fake.t, get_threads=lambda: fake.threads, set_threads=fake.set,
                                environ={threads.TUNER_OPT_OUT: "0"})
    fake.run(tuner, 200)
    assert fake.sets == [] and not tuner.active
    with pytest.raises(ValueError):
        threads.ThreadTuner(window=0)


def test_tuner_as_step_callback_is_inert_off_the_cpu():
    class Cuda:
        type = "cuda"

    class Trainer:
        device = Cuda()

    fake = FakeTorch(2, {2: 0.20, 1: 0.08})
    tuner = fake.tuner()
    for _ in range(100):
        tuner(Trainer(), 0)
        fake.t += fake.cost[fake.threads]
    assert fake.sets == [] and not tuner.active


def test_tuner_switching_threads_does_not_change_a_training_run(tmp_path):
    # the tuner may switch at any step, so `statgan train` attaches it only where the step's numbers do
    # not depend on the thread count (thread_tuner_for checks the run's own networks); a tuned run must
    # then equal a fixed one (else a run's result would depend on the machine's load)
    torch = pytest.importorskip("torch")
    from statgan import config
    from statgan.train.thread_invariance import thread_tuner_for
    from statgan.train.trainer import Trainer

    before = torch.get_num_threads()
    results, tuners = [], []
    try:
        # two threads whatever an earlier test left (an in-process `statgan audit --threads 1` sets one);
        # the tuner compares this count with one thread
        torch.set_num_threads(max(2, before))
        for name in ("fixed", "tuned"):
            # the default model (tensors big enough for parallel kernels), past the first lazy R1/R2 step
            cfg = config.load(None, [f"run.out_dir={tmp_path}", f"run.name={name}", "train.steps=17",
                                     "train.progress=false", "train.tensorboard=false", "train.sample_every=0",
                                     "train.checkpoint_every=0"])
            trainer = Trainer(cfg, tmp_path / name)
            if name == "tuned":
                tuner = thread_tuner_for(trainer, lambda: threads.ThreadTuner(warmup=0, window=1, hold=1, max_hold=1,
                                                                             run_delay=None, environ={}))
                if tuner is not None:
                    trainer.callbacks.append(tuner)
                    tuners.append(tuner)
            trainer.fit()
            results.append({f"{net}.{k}": v.clone() for net in ("G", "D")
                            for k, v in getattr(trainer, net).state_dict().items()})
    finally:
        torch.set_num_threads(before)
    for tuner in tuners:
        assert sum(len(h[3]) == 2 for h in tuner.history) >= 3  # it tried 1 and 2 threads
    fixed, tuned = results
    assert all(torch.equal(fixed[k], tuned[k]) for k in fixed)


class _ThreadCountScale:
    """A layer whose output depends on the torch thread count: what a CPU kernel with a
    thread-dependent reduction order does, made visible."""

    def __new__(cls, torch):
        class Scale(torch.nn.Linear):
            def forward(self, x):
                return super().forward(x) * (1.0 + 1e-3 * torch.get_num_threads())
        return Scale


def test_thread_tuner_is_withheld_where_the_step_depends_on_the_thread_count():
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from statgan.train.thread_invariance import step_depends_on_threads, thread_tuner_for

    def trainer(G, D):
        return SimpleNamespace(device=torch.device("cpu"), G=G, D=D, data_shape=(3,), world=SimpleNamespace(size=1),
                               cfg=SimpleNamespace(train=SimpleNamespace(batch_size=4), model=SimpleNamespace(latent_dim=2)))

    torch.manual_seed(0)
    plain = trainer(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    varying = trainer(torch.nn.Linear(2, 3), _ThreadCountScale(torch)(3, 1))
    before = torch.get_num_threads()
    D_state = {k: v.clone() for k, v in varying.D.state_dict().items()}
    z, x = torch.randn(4, 2), torch.randn(4, 3)
    rng = torch.random.get_rng_state()
    assert step_depends_on_threads(varying.G, varying.D, z, x)
    assert not step_depends_on_threads(plain.G, plain.D, z, x)
    assert thread_tuner_for(varying, object) is None
    assert thread_tuner_for(plain, object) is not None
    # nothing of the caller's changed: thread count, weights, global random state
    assert torch.get_num_threads() == before
    assert all(torch.equal(D_state[k], v) for k, v in varying.D.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())


def test_thread_check_runs_under_the_runs_precision():
    # a layer whose output depends on the thread count only inside autocast (as bf16 kernels may where
    # fp32 ones do not): a trainer with that precision gets no tuner, the same trainer in fp32 gets one
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from statgan.train.precision import Precision
    from statgan.train.thread_invariance import thread_tuner_for

    class ScaleUnderAutocast(torch.nn.Linear):
        def forward(self, x):
            scale = 1.0 + 0.1 * torch.get_num_threads() if torch.is_autocast_enabled("cpu") else 1.0  # > bf16 eps
            return super().forward(x) * scale

    def trainer(precision):
        return SimpleNamespace(device=torch.device("cpu"), G=torch.nn.Linear(2, 3), D=ScaleUnderAutocast(3, 1),
                               data_shape=(3,), world=SimpleNamespace(size=1), precision=precision,
                               cfg=SimpleNamespace(train=SimpleNamespace(batch_size=4), model=SimpleNamespace(latent_dim=2)))

    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bfloat16 warns; the check still runs
        bf16 = Precision("bf16", cpu)
    assert thread_tuner_for(trainer(bf16), object) is None
    assert thread_tuner_for(trainer(Precision("fp32", cpu)), object) is not None
    assert thread_tuner_for(trainer(None), object) is not None


# ---- the tuner of a command, ticked by the library's loops -----------------------------------------


def test_a_new_loop_is_measured_afresh_and_the_gap_between_loops_is_not_a_tick():
    fake = FakeTorch(2, {2: 0.05, 1: 0.08})
    tuner = fake.tuner(hold=1000, max_hold=1000)
    tuner.start_loop("invert")
    fake.run(tuner, 40)
    assert len(tuner.history) == 1 and tuner.history[0][2] == "start"
    # the same loop again after a long pause (data loading between two sets): no new measurement
    fake.t += 100.0
    tuner.start_loop("invert")
    fake.run(tuner, 40)
    assert len(tuner.history) == 1
    # another loop, slower per tick and faster on one thread: measured from the count in use
    tuner.start_loop("ais")
    fake.cost = {2: 0.5, 1: 0.2}
    fake.run(tuner, 40)
    assert len(tuner.history) == 2
    tick, chosen, why, scores = tuner.history[1]
    assert why == "loop ais" and chosen == 1 and set(scores) == {1, 2}
    assert scores[2] == pytest.approx(0.5) and scores[1] == pytest.approx(0.2)


def test_loop_hooks_do_nothing_without_a_tuner_and_reach_the_installed_one():
    assert threads.installed() is None
    threads.loop_start("x")  # no tuner: nothing happens, nothing fails
    threads.loop_tick()
    fake = FakeTorch(2, {2: 0.05, 1: 0.08})
    tuner = fake.tuner()
    with threads.tuning(tuner) as t:
        assert t is tuner and threads.installed() is tuner
        threads.loop_start("x")
        for _ in range(3):
            threads.loop_tick()
        with threads.tuning(None):  # a fixed count: the outer tuner stays
            assert threads.installed() is tuner
    assert threads.installed() is None and tuner.ticks == 3


class _Recorder:
    """Stands in for a tuner: records the loops the library starts and the ticks of each."""

    def __init__(self):
        self.loops = []

    def start_loop(self, name):
        self.loops.append([name, 0])

    def tick(self):
        self.loops[-1][1] += 1


def test_the_audit_and_eval_loops_tick_the_installed_tuner():
    torch = pytest.importorskip("torch")
    from statgan.audit.ais import ais
    from statgan.audit.inversion import invert
    from statgan.metrics.features import get_extractor
    from statgan.metrics.sources import extract, tensor_batches

    g = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 4, 4)))
    x = torch.rand(4, 1, 4, 4) * 2 - 1
    rec = _Recorder()
    with threads.tuning(rec):
        invert(g, x, 3, restarts=2, steps=5, seed=0)
        ais(g, x, 3, sigma=0.3, n_steps=6, n_chains=2, seed=0)
        extract("test", tensor_batches(x, None, 2), get_extractor("pixels"), frozenset())
    assert rec.loops == [["invert", 5], ["ais", 5], ["features: test", 2]]


def test_switching_threads_inside_the_audit_loops_does_not_change_their_numbers():
    torch = pytest.importorskip("torch")
    from statgan import config
    from statgan.audit.ais import ais
    from statgan.audit.inversion import invert
    from statgan.models import build_models

    torch.manual_seed(0)
    G, _ = build_models(config.load(None, []), (1, 28, 28))  # the default DCGAN: parallel kernels
    G.eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    before = torch.get_num_threads()
    results = []
    try:
        torch.set_num_threads(max(2, before))
        for tuner in (None, threads.ThreadTuner(warmup=0, window=1, hold=1, max_hold=1, run_delay=None, environ={})):
            with threads.tuning(tuner):
                inv = invert(G, x, 100, restarts=2, steps=8, seed=1)
                a = ais(G, x[:2], 100, sigma=0.2, n_steps=8, n_chains=2, seed=2)
            results.append((inv.z, inv.mse, a.log_weights))
            if tuner is not None:
                assert sum(len(h[3]) == 2 for h in tuner.history) >= 2  # it tried 1 and 2 threads
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(u, v) for u, v in zip(*results))
