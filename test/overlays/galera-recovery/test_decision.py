"""
The recovery decision as a table: each row is what the servers report (the input of
`galera-recovery simulate`), and what each answering server must decide. Every rule of the
program's header, each policy, and the sequences of issue 18 have rows of their own.
Run alone: python3 -m unittest discover -s test/overlays/galera-recovery
"""
import json
import os
import subprocess
import tempfile
import time
import unittest

from recovery import config, load

gr = load()
U = "6b3c6a4e-1f2a-11ef-9c33-000000000001"
OTHER = "6b3c6a4e-1f2a-11ef-9c33-000000000002"
THREE = ["opz3-1-onder", "opz3-2-midden", "opz3-3-boven"]
ONDER, MIDDEN, BOVEN = THREE
FIVE = ["n1", "n2", "n3", "n4", "n5"]
LONG = 10 ** 6


def clean(seqno, safe=False, **extra):
    return {"uuid": U, "seqno": seqno, "safeToBootstrap": safe, "crashed": False, **extra}


def crashed(seqno, view=None, **extra):
    described = {"uuid": U, "seqno": seqno, "safeToBootstrap": False, "crashed": True, **extra}
    if view:
        described["lastView"] = view
    return described


def empty():
    return {"uuid": gr.ZERO_UUID, "seqno": -1}


def primary(seqno, **extra):
    return {"uuid": U, "seqno": seqno, "running": True, "primary": True, **extra}


FORK = {"id": "f1", "uuid": U, "base": 9, "gaveUp": [ONDER], "by": BOVEN}

# (name, names, policy, waited, servers, expected {server: (action, words in the reason)})
ROWS = [
    # Rule 1: a primary component is joined, by any server, stale flag or not.
    ("a primary component is joined, even by a server with the flag and a stale one", THREE, "majority", 0,
     {ONDER: clean(20, safe=True), MIDDEN: primary(25), BOVEN: crashed(3)},
     {ONDER: ("join", "joining the primary component of opz3-2-midden"), BOVEN: ("join", "joining the primary")}),
    ("a server ahead of the primary component does not join it (Galera would refuse and reset it)", THREE, "majority", 0,
     {ONDER: clean(61), MIDDEN: primary(10), BOVEN: None},
     {ONDER: ("wait", "holds writes the primary component of opz3-2-midden lacks (seqno 61 > 10)")}),
    ("a server whose writes a survivor bootstrap gave up joins with a full state transfer", THREE, "survivor", 0,
     {ONDER: clean(12, safe=True), MIDDEN: primary(60, forks=[FORK], line=["f1"]), BOVEN: primary(60, forks=[FORK], line=["f1"])},
     {ONDER: ("join", "with a full state transfer: this server's writes after seqno 9 were given up when opz3-3-boven")}),
    ("a server a survivor bootstrap named, whose position could not be recovered, joins with a full transfer", THREE, "survivor", 0,
     {ONDER: crashed(-1, known=False), MIDDEN: primary(60, forks=[FORK], line=["f1"]), BOVEN: None},
     {ONDER: ("join", "with a full state transfer")}),
    ("a server whose crashed position could not be recovered is waited for, never bootstrapped from", THREE, "majority", LONG,
     {ONDER: crashed(-1, known=False), MIDDEN: crashed(40), BOVEN: crashed(40)},
     {MIDDEN: ("wait", "waiting for opz3-1-onder to recover its last committed position"), BOVEN: ("wait", "to recover")}),
    ("a server that left before the survivor bootstrap's base joins it as usual", THREE, "survivor", 0,
     {ONDER: clean(9), MIDDEN: primary(60, forks=[FORK], line=["f1"]), BOVEN: None},
     {ONDER: ("join", "joining the primary component of opz3-2-midden")}),
    ("a primary component on a history a survivor bootstrap gave up is not joined", THREE, "survivor", 0,
     {ONDER: primary(14), MIDDEN: clean(60, forks=[FORK], line=["f1"]), BOVEN: None},
     {MIDDEN: ("wait", "opz3-1-onder runs a primary component on a history that opz3-3-boven gave up at seqno 9")}),
    # Rule 2: the very first boot.
    ("a new cluster starts on the bootstrap node once all answer", THREE, "majority", 0,
     {ONDER: empty(), MIDDEN: empty(), BOVEN: None},
     {ONDER: ("wait", "a new one starts only once all 3 answer (2 of 3 servers seen)"), MIDDEN: ("wait", "only once all 3")}),
    ("all answer with no history: the bootstrap node starts it, the others wait for it", THREE, "majority", 0,
     {ONDER: empty(), MIDDEN: empty(), BOVEN: empty()},
     {ONDER: ("bootstrap", "starting the new Galera cluster k3s_cluster"), MIDDEN: ("wait", "waiting for opz3-1-onder to start it"),
      BOVEN: ("wait", "waiting for opz3-1-onder to start it")}),
    ("a bootstrap node whose datadir was lost never starts a new cluster while the others hold one", THREE, "majority", 0,
     {ONDER: empty(), MIDDEN: crashed(900), BOVEN: crashed(905)},
     {ONDER: ("wait", "waiting for opz3-3-boven to bootstrap"), BOVEN: ("bootstrap", "highest seqno 905 of 3 servers seen")}),
    # Histories a program must not choose between.
    ("servers of two cluster histories wait for a person", THREE, "majority", LONG,
     {ONDER: crashed(7), MIDDEN: {"uuid": OTHER, "seqno": 3, "crashed": True}, BOVEN: crashed(9)},
     {n: ("wait", "servers hold different cluster histories") for n in THREE}),
    # Rule 3: Galera's own pc.recovery.
    ("every server back with the same last primary view: all start, pc.recovery restores it", THREE, "majority", 0,
     {n: crashed(s, THREE) for n, s in zip(THREE, (7, 9, 9))},
     {n: ("join", "all 3 servers of the last primary view are back") for n in THREE}),
    # Rule 4: the most advanced server, proven.
    ("after a power cut without a common view, the highest seqno bootstraps (ties to the earlier)", THREE, "majority", 0,
     {ONDER: crashed(1200), MIDDEN: crashed(1843), BOVEN: crashed(1843)},
     {MIDDEN: ("bootstrap", "bootstrapping, highest seqno 1843 of 3 servers seen"),
      ONDER: ("wait", "waiting for opz3-2-midden to bootstrap"), BOVEN: ("wait", "waiting for opz3-2-midden")}),
    ("the last to leave cleanly waits waitForAll for the others first: one may have been chosen without it since", THREE, "majority", 0,
     {ONDER: None, MIDDEN: None, BOVEN: clean(12, safe=True)},
     {BOVEN: ("wait", "waiting up to 120 s for opz3-1-onder, opz3-2-midden, which may hold a few writes more or have bootstrapped without it since")}),
    ("the last to leave cleanly bootstraps alone after waitForAll", THREE, "majority", 121,
     {ONDER: None, MIDDEN: None, BOVEN: clean(12, safe=True)},
     {BOVEN: ("bootstrap", "opz3-3-boven left the cluster last (safe_to_bootstrap)")}),
    ("the last to leave cleanly bootstraps at once when every server answers", THREE, "majority", 0,
     {ONDER: clean(10), MIDDEN: clean(11), BOVEN: clean(12, safe=True)},
     {BOVEN: ("bootstrap", "highest seqno 12 of 3 servers seen"), ONDER: ("wait", "waiting for opz3-3-boven"), MIDDEN: ("wait", "waiting for opz3-3-boven")}),
    ("a power cut with one server missing: the others wait waitForAll for it first", THREE, "majority", 30,
     {ONDER: crashed(40, THREE), MIDDEN: crashed(40, THREE), BOVEN: None},
     {ONDER: ("wait", "waiting up to 120 s for opz3-3-boven, which may hold a few writes more"), MIDDEN: ("wait", "up to 120 s")}),
    ("a power cut with one server missing: after waitForAll the view proves it could not go on alone", THREE, "majority", 121,
     {ONDER: crashed(40, THREE), MIDDEN: crashed(40, THREE), BOVEN: None},
     {ONDER: ("bootstrap", "crashed in a primary view of 3 that could not go on without it"), MIDDEN: ("wait", "waiting for opz3-1-onder")}),
    ("a server missing that had left the primary view before the crash is behind: no wait", THREE, "majority", 0,
     {ONDER: crashed(40, [ONDER, MIDDEN]), MIDDEN: crashed(40, [ONDER, MIDDEN]), BOVEN: None},
     {ONDER: ("bootstrap", "primary view of 2"), MIDDEN: ("wait", "waiting for opz3-1-onder")}),
    ("a view whose missing members are a majority of it proves nothing", FIVE, "majority", LONG,
     {"n1": crashed(50, ["n1", "n2", "n3"]), "n2": None, "n3": None, "n4": clean(20), "n5": clean(20)},
     {"n1": ("wait", "not bootstrapping: 3 of 5 servers seen"), "n4": ("wait", "policy majority waits"), "n5": ("wait", "policy majority")}),
    ("a clean stop after the crash of another: the one that crashed alone proves nothing", THREE, "majority", LONG,
     {ONDER: crashed(40, THREE), MIDDEN: clean(40), BOVEN: None},
     {ONDER: ("wait", "not bootstrapping"), MIDDEN: ("wait", "not bootstrapping")}),
    ("the most advanced needs the votes of a majority of those that answer", THREE, "majority", 0,
     {ONDER: crashed(5), MIDDEN: crashed(6), BOVEN: crashed(5)},
     {MIDDEN: ("bootstrap", "highest seqno 6"), ONDER: ("wait", "waiting for opz3-2-midden")}),
    # Rule 5: not proven.
    ("majority: a lone crashed server waits, however long", THREE, "majority", LONG,
     {ONDER: None, MIDDEN: crashed(11), BOVEN: None},
     {MIDDEN: ("wait", "not bootstrapping: 1 of 3 servers seen")}),
    ("survivor: a lone crashed server waits until survivorAfter", THREE, "survivor", 599,
     {ONDER: None, MIDDEN: crashed(11), BOVEN: None},
     {MIDDEN: ("wait", "policy survivor bootstraps after 600 s")}),
    ("survivor: after survivorAfter it bootstraps and gives the others' last writes up", THREE, "survivor", 600,
     {ONDER: None, MIDDEN: crashed(11), BOVEN: None},
     {MIDDEN: ("bootstrap", "policy survivor, nothing proven after 600 s")}),
    # Sequence 1: orderly stop, onder last, powered on without it.
    ("sequence 1: the last leaver is missing; the others wait under majority, however long", THREE, "majority", LONG,
     {ONDER: None, MIDDEN: clean(8), BOVEN: clean(9)},
     {MIDDEN: ("wait", "stopped cleanly without safe_to_bootstrap, so opz3-1-onder left after them"),
      BOVEN: ("wait", "opz3-1-onder left after them")}),
    ("sequence 1 under survivor: not before survivorAfter", THREE, "survivor", 300,
     {ONDER: None, MIDDEN: clean(8), BOVEN: clean(9)},
     {BOVEN: ("wait", "policy survivor bootstraps after 600 s")}),
    ("sequence 1 under survivor: after survivorAfter, saying the missing server's writes are given up", THREE, "survivor", 601,
     {ONDER: None, MIDDEN: clean(8), BOVEN: clean(9)},
     {BOVEN: ("bootstrap", "the last writes of opz3-1-onder are given up"), MIDDEN: ("wait", "waiting for opz3-3-boven")}),
    ("sequence 1: the last leaver back, it bootstraps", THREE, "majority", 0,
     {ONDER: clean(10, safe=True), MIDDEN: clean(8), BOVEN: clean(9)},
     {ONDER: ("bootstrap", "highest seqno 10 of 3"), MIDDEN: ("wait", "waiting for opz3-1-onder"), BOVEN: ("wait", "opz3-1-onder")}),
    # Sequence 2: a stale flag against a newer position of the same history.
    ("sequence 2: a stale flag does not win over a newer position", THREE, "majority", 0,
     {ONDER: clean(9, safe=True), MIDDEN: clean(55), BOVEN: clean(61, safe=True)},
     {BOVEN: ("bootstrap", "the safe_to_bootstrap of opz3-1-onder is stale (behind seqno 61)"),
      ONDER: ("wait", "waiting for opz3-3-boven"), MIDDEN: ("wait", "waiting for opz3-3-boven")}),
    ("sequence 2, newest missing: the stale flag proves nothing", THREE, "majority", LONG,
     {ONDER: clean(9, safe=True), MIDDEN: clean(55), BOVEN: None},
     {ONDER: ("wait", "not bootstrapping"), MIDDEN: ("wait", "opz3-3-boven left after them")}),
    ("sequence 2 after a refused join: the reset server counts with the position it had", THREE, "majority", 0,
     {ONDER: clean(9, safe=True), MIDDEN: clean(55), BOVEN: clean(61, restored=True)},
     {BOVEN: ("bootstrap", "highest seqno 61"), ONDER: ("wait", "waiting for opz3-3-boven")}),
    ("survivor: the old last leaver back among stopped survivors: the newest history wins", THREE, "survivor", 0,
     {ONDER: clean(12, safe=True), MIDDEN: clean(55, forks=[FORK], line=["f1"]), BOVEN: clean(60, safe=True, forks=[FORK], line=["f1"])},
     {BOVEN: ("bootstrap", "highest seqno 60"), ONDER: ("wait", "were given up when opz3-3-boven bootstrapped without it")}),
    ("two survivor bootstraps that gave each other up: a person chooses", THREE, "survivor", LONG,
     {ONDER: clean(14, safe=True, forks=[{"id": "f2", "uuid": U, "base": 12, "gaveUp": [MIDDEN, BOVEN], "by": ONDER}], line=["f2"]),
      MIDDEN: clean(55, forks=[FORK], line=["f1"]), BOVEN: None},
     {ONDER: ("wait", "gave up each other's history"), MIDDEN: ("wait", "a person must")}),
]


class Rows(unittest.TestCase):
    pass


def make(row):
    name, names, policy, waited, servers, expected = row

    def check(self):
        cfg = config(names, policy=policy)
        got = gr.simulate(cfg, {"waited": waited, "servers": servers})["decisions"]
        self.assertEqual(sorted(expected), sorted(n for n in expected if n in got), json.dumps(got, indent=1))
        for server, (action, words) in expected.items():
            self.assertEqual(got[server]["action"], action, f"{server}: {got[server]['reason']}")
            self.assertIn(words, got[server]["reason"], server)
        bootstraps = [n for n, d in got.items() if d["action"] == "bootstrap"]
        self.assertLessEqual(len(bootstraps), 1, f"two servers bootstrap: {bootstraps}")
    return check


for i, row in enumerate(ROWS):
    setattr(Rows, f"test_{i:02d}_{row[0][:60].replace(' ', '_')}", make(row))


class Simulate(unittest.TestCase):
    def test_every_described_server_decides_and_the_silent_do_not(self):
        got = gr.simulate(config(THREE), {"waited": 0, "servers": {ONDER: clean(3, safe=True), MIDDEN: None}})
        self.assertEqual(sorted(got["decisions"]), [ONDER])

    def test_a_server_not_in_the_cluster_is_refused(self):
        with self.assertRaises(ValueError):
            gr.simulate(config(THREE), {"servers": {"stranger": clean(1)}})

    def test_a_survivor_bootstrap_names_what_it_gives_up(self):
        got = gr.simulate(config(THREE, policy="survivor"), {"waited": LONG, "servers": {MIDDEN: clean(8), BOVEN: clean(9)}})
        fork = got["decisions"][BOVEN]["fork"]
        self.assertEqual((fork["base"], fork["gaveUp"], fork["by"]), (9, [ONDER], BOVEN))


class Chosen(unittest.TestCase):
    """A person's choice (docs/recovery.md, "When it refuses"): it bootstraps, and gives up the servers that do not answer."""

    def test_the_missing_servers_rejoin_with_a_full_transfer(self):
        cfg = dict(config(THREE), node=MIDDEN)
        mine = gr.simulated_state(MIDDEN, clean(8))
        decision = gr.chosen(cfg, mine, {BOVEN: gr.simulated_state(BOVEN, clean(8))}, {"epoch": 1, "reason": "waiting"})
        self.assertEqual((decision["action"], decision["fork"]["gaveUp"], decision["fork"]["base"]), ("bootstrap", [ONDER], 8))
        fork = dict(decision["fork"], id="p1")
        got = gr.simulate(config(THREE), {"servers": {ONDER: clean(9, safe=True), MIDDEN: primary(30, forks=[fork], line=["p1"]), BOVEN: None}})
        self.assertIn("with a full state transfer", got["decisions"][ONDER]["reason"])

    def test_with_every_server_answering_nothing_is_given_up(self):
        cfg = dict(config(THREE), node=MIDDEN)
        peers = {n: gr.simulated_state(n, clean(8)) for n in (ONDER, BOVEN)}
        self.assertNotIn("fork", gr.chosen(cfg, gr.simulated_state(MIDDEN, clean(8)), peers, {"epoch": 0, "reason": ""}))


class PcRecoveryStuck(unittest.TestCase):
    """A start restoring the saved view is ended after PC_RECOVERY_SECONDS, or it would hang until TimeoutStartSec."""

    def test_table(self):
        started = {"boot": "b", "at": 1000.0}
        limit = gr.PC_RECOVERY_SECONDS
        rows = [
            ("waited long enough, silent, no transfer", started, False, True, False, 1000 + limit, True),
            ("not long yet", started, False, True, False, 1000 + limit - 1, False),
            ("MariaDB answers: restored", started, True, True, False, 5000, False),
            ("MariaDB not running", started, False, False, False, 5000, False),
            ("a state transfer runs", started, False, True, True, 5000, False),
            ("a stamp of another boot", {"boot": "a", "at": 1000.0}, False, True, False, 5000, False),
            ("no pc.recovery start", None, False, True, False, 5000, False),
        ]
        for name, tried, answering, starting, transfer, now, stuck in rows:
            self.assertIs(gr.pc_recovery_stuck(tried, answering, starting, transfer, now, "b"), stuck, name)


class RestartMariadb(unittest.TestCase):
    """A mariadbd whose shutdown hangs after Galera left it out is killed, not waited for."""

    def setUp(self):
        self.saved = gr.main_pid, gr.subprocess.run, gr.STOP_SECONDS
        gr.STOP_SECONDS = 1
        self.mariadbd = subprocess.Popen(["sleep", "30"])
        gr.main_pid = lambda: self.mariadbd.pid
        self.calls = []

    def tearDown(self):
        gr.main_pid, gr.subprocess.run, gr.STOP_SECONDS = self.saved
        self.mariadbd.kill()
        self.mariadbd.wait()

    def systemctl(self, stops):
        def run(args, **_):
            self.calls.append(args[1])
            if args[1] == "kill" or (args[1] == "restart" and stops):
                self.mariadbd.kill()
                self.mariadbd.wait()
        return run

    def test_a_shutdown_that_hangs_is_killed(self):
        gr.subprocess.run = self.systemctl(stops=False)
        gr.restart_mariadb({"node": MIDDEN})
        self.assertEqual(self.calls, ["restart", "kill"])

    def test_a_shutdown_that_ends_is_left_alone(self):
        gr.subprocess.run = self.systemctl(stops=True)
        gr.restart_mariadb({"node": MIDDEN})
        self.assertEqual(self.calls, ["restart"])


class Clock(unittest.TestCase):
    """Sequence 3: NTP stepping the wall clock by an hour does not end a wait."""

    def setUp(self):
        self.run = tempfile.mkdtemp(prefix="galera-recovery-run-")
        self.saved = gr.WAITING_SINCE_FILE, time.time
        gr.WAITING_SINCE_FILE = os.path.join(self.run, "galera-waiting-since")

    def tearDown(self):
        gr.WAITING_SINCE_FILE, time.time = self.saved

    def test_a_wall_clock_step_does_not_move_the_wait(self):
        self.assertLess(gr.waited_seconds(), 1)
        time.time = lambda: self.saved[1]() + 3600
        self.assertLess(gr.waited_seconds(), 5)

    def test_the_program_never_reads_the_wall_clock(self):
        def refuse():
            raise AssertionError("time.time() read")
        time.time = refuse
        gr.waited_seconds()
        self.assertTrue(gr.fresh(gr.stamp(), 20))

    def test_a_wait_of_another_boot_starts_again(self):
        with open(gr.WAITING_SINCE_FILE, "w", encoding="utf-8") as handle:
            json.dump({"boot": "another-boot", "at": 0}, handle)
        self.assertLess(gr.waited_seconds(), 1)


class History(unittest.TestCase):
    """The position a refused join made Galera forget is read back from the history file."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="galera-recovery-history-")
        self.saved = gr.DATADIR, gr.HISTORY_FILE
        gr.DATADIR = os.path.join(self.dir, "mysql")
        gr.HISTORY_FILE = os.path.join(self.dir, "state", "history.json")
        os.makedirs(os.path.join(gr.DATADIR, "mysql"))
        self.cfg = config(THREE)

    def tearDown(self):
        gr.DATADIR, gr.HISTORY_FILE = self.saved

    def grastate(self, uuid, seqno, safe=0):
        with open(os.path.join(gr.DATADIR, "grastate.dat"), "w", encoding="utf-8") as handle:
            handle.write(f"# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   {seqno}\nsafe_to_bootstrap: {safe}\n")

    def start(self, action, peers_seqno):
        mine = gr.own_position(self.cfg)
        gr.record_start(mine, {MIDDEN: {"seqno": peers_seqno}}, {"action": action, "reason": "", "candidate": None}, self.cfg)
        return mine

    def test_a_reset_after_a_refused_join_restores_the_position(self):
        self.grastate(U, 61, 1)
        self.start("join", 10)  # joining a primary behind it: Galera refuses and resets grastate.dat
        self.grastate(gr.ZERO_UUID, -1)
        mine = gr.own_position(self.cfg)
        self.assertEqual((mine["uuid"], mine["seqno"], mine.get("restored")), (U, 61, True))

    def test_a_reset_after_joining_from_behind_is_not_trusted(self):
        self.grastate(U, 5)
        self.start("join", 40)  # a state transfer may have begun to replace this datadir
        self.grastate(gr.ZERO_UUID, -1)
        self.assertEqual(gr.own_position(self.cfg)["uuid"], gr.ZERO_UUID)

    def test_an_emptied_datadir_forgets_the_history(self):
        self.grastate(U, 61)
        self.start("bootstrap", 10)
        for name in os.listdir(gr.DATADIR):
            if os.path.isfile(os.path.join(gr.DATADIR, name)):
                os.unlink(os.path.join(gr.DATADIR, name))
        self.grastate(gr.ZERO_UUID, -1)
        self.assertEqual(gr.own_position(self.cfg)["uuid"], gr.ZERO_UUID)


if __name__ == "__main__":
    unittest.main()
