"""
A model check of the recovery rules. A small model of what Galera writes into grastate.dat and
gvwstate.dat, and of which writes each server holds, is driven through every sequence of events
up to a depth, from a running cluster of 3 or 5 servers; at every boot the real decision
(`simulate` of the program the nodes run) says what each server does.

Galera, as modelled (domain facts, checked against MariaDB 10.11 / Galera 26.4):
- The members of a primary component hold the same writes (a write is certified on every member
  before it is acknowledged; the model leaves out the few write-sets a crashed member may not
  have applied yet: the rules wait waitForAll for them, and no rule may depend on their absence).
- Clean stop: grastate.dat gets the seqno, safe_to_bootstrap: 1 only on the last member; the
  others go on as a smaller primary component; gvwstate.dat is removed.
- Crash: seqno -1 (recovered by --wsrep-recover), gvwstate.dat keeps the primary view. A crash
  that would leave the others without a majority of the view is modelled as the power cut of all.
- Power cut: every running member crashes at once.
- Join: IST when the joiner's writes are a prefix of the primary component's, a full transfer
  (SST) when it has none or the decision forgot them; Galera refuses a joiner ahead of it
  ("Reversing history"), and an IST onto writes the primary lacks diverges silently.
- Bootstrap: a new primary component of one, from the server's own writes.

Properties, checked after every event:
- never two primary components;
- a server that bootstraps holds every committed write (under policy survivor, unless its
  decision says which servers' writes it gives up, after survivorAfter);
- no join is refused and no IST lands on a diverged history;
- liveness: from every state where no server runs, powering on every server, or a majority that
  includes every member of the last primary component, leads to one primary component of all of
  them within a few rounds, with no person. (A majority that lacks a member of the last primary
  component cannot know that member holds nothing more, so it may wait for it.)
"""
import itertools
import json
import time
import unittest
from collections import namedtuple

from recovery import config, load

gr = load()
U = "6b3c6a4e-1f2a-11ef-9c33-000000000001"
LONG = 10 ** 6
ROUNDS = 6

# disk: None (empty datadir) or (writes, clean, safe, view); record: (line, forks)
Server = namedtuple("Server", "power disk line forks voted epoch")
State = namedtuple("State", "servers pc writes committed next_write last_pc forks_made")


class Violation(Exception):
    pass


class Model:
    def __init__(self, names, policy, max_writes):
        self.names = names
        self.policy = policy
        self.max_writes = max_writes
        self.config = config(names, policy=policy)
        self.people = 0
        self.decisions = {}

    def initial(self):
        """Every server running in one primary component, with no writes yet."""
        servers = tuple(Server("run", ((), True, False, None), (), frozenset(), None, 0) for _ in self.names)
        return State(servers, frozenset(range(len(self.names))), (), frozenset(), 1, frozenset(), 0)

    # --- what the servers report -------------------------------------------
    def describe(self, state, waited):
        servers = {}
        for i, s in enumerate(state.servers):
            name = self.names[i]
            extra = {"line": list(s.line), "forks": [dict(f) for f in s.forks], "votedFor": dict(s.voted) if s.voted else None,
                     "epoch": s.epoch}
            if s.power == "off":
                servers[name] = None
            elif s.power == "run":
                servers[name] = {"uuid": U, "seqno": len(state.writes), "running": True, "primary": True, **extra}
            elif s.disk is None:
                servers[name] = {"uuid": gr.ZERO_UUID, "seqno": -1, **extra}
            else:
                writes, clean, safe, view = s.disk
                servers[name] = {"uuid": U, "seqno": len(writes), "safeToBootstrap": safe, "crashed": not clean, **extra}
                if view and not clean:
                    servers[name]["lastView"] = sorted(self.names[m] for m in view)
        return {"waited": waited, "servers": servers}

    def simulate(self, state, waited):
        """The real decision (`gr.simulate`) for `state`, made once per description: many states look alike to it."""
        description = self.describe(state, waited)
        key = json.dumps(description, sort_keys=True)
        if key not in self.decisions:
            self.decisions[key] = gr.simulate(self.config, description)
        return self.decisions[key]

    # --- events --------------------------------------------------------------
    def events(self, state):
        out = []
        running = state.pc or frozenset()
        for i, s in enumerate(state.servers):
            if s.power == "off":
                out.append((f"power on {self.names[i]}", lambda st, i=i: self.power(st, i, "up")))
            elif s.power == "up":
                out.append((f"power off {self.names[i]}", lambda st, i=i: self.power(st, i, "off")))
        if any(s.power == "up" for s in state.servers):
            out.append(("decide", lambda st: self.round(st, 0)))
            out.append(("decide after every timeout", lambda st: self.round(st, LONG)))
        if running:
            if state.next_write <= self.max_writes:
                out.append(("write", self.write))
            for i in sorted(running):
                out.append((f"stop {self.names[i]}", lambda st, i=i: self.stop(st, i)))
                if len(running) == 1 or (len(running) - 1) * 2 > len(running):
                    out.append((f"crash {self.names[i]}", lambda st, i=i: self.crash(st, [i])))
            out.append(("power cut", lambda st: self.crash(st, sorted(running))))
        return out

    def replace(self, state, i, **changes):
        servers = list(state.servers)
        servers[i] = servers[i]._replace(**changes)
        return state._replace(servers=tuple(servers))

    def power(self, state, i, power):
        return self.replace(state, i, power=power)

    def write(self, state):
        w = state.next_write
        return state._replace(writes=state.writes + (w,), committed=state.committed | {w}, next_write=w + 1)

    def stop(self, state, i):
        pc = state.pc
        state = self.replace(state, i, power="off", disk=(state.writes, True, len(pc) == 1, None))
        rest = pc - {i}
        return state._replace(pc=rest or None, last_pc=state.last_pc if rest else frozenset({i}))

    def crash(self, state, members):
        pc = state.pc
        for i in members:
            state = self.replace(state, i, power="off", disk=(state.writes, False, len(pc) == 1, pc))
        rest = pc - set(members)
        if rest:
            return state._replace(pc=rest)
        # A power cut takes the boards that were still deciding too.
        for i, s in enumerate(state.servers):
            if s.power == "up":
                state = self.replace(state, i, power="off")
        return state._replace(pc=None, last_pc=pc)

    def round(self, state, waited):
        decisions = self.simulate(state, waited)["decisions"]
        index = {n: i for i, n in enumerate(self.names)}
        bootstraps = [n for n, d in decisions.items() if d["action"] == "bootstrap"]
        if len(bootstraps) > 1 or (bootstraps and state.pc):
            raise Violation(f"two primary components: {bootstraps} bootstrap{' beside a running one' if state.pc else ''}")
        for name, d in decisions.items():
            if d.get("vote"):
                state = self.replace(state, index[name], voted=tuple(sorted(d["vote"].items())))
        joins = [n for n, d in decisions.items() if d["action"] == "join"]
        if state.pc:
            for name in joins:
                state = self.join(state, index[name], decisions[name])
            return state
        if bootstraps:
            return self.bootstrap(state, index[bootstraps[0]], decisions[bootstraps[0]])
        if joins and len(joins) == len(self.names):
            return self.restore_view(state)
        return state

    def bootstrap(self, state, i, decision):
        s = state.servers[i]
        writes = s.disk[0] if s.disk else ()
        lost = state.committed - set(writes)
        fork = decision.get("fork")
        if lost and not (self.policy == "survivor" and fork):
            raise Violation(f"{self.names[i]} bootstraps without committed writes {sorted(lost)}: {decision['reason']}")
        line, forks = tuple(decision.get("line", s.line)), s.forks
        if fork:
            made = (("base", fork["base"]), ("by", fork["by"]), ("gaveUp", tuple(fork["gaveUp"])),
                    ("id", f"f{state.forks_made}"), ("uuid", fork["uuid"]))
            line, forks = line + (f"f{state.forks_made}",), forks | {made}
            state = state._replace(forks_made=state.forks_made + 1)
        state = self.replace(state, i, power="run", line=line, forks=forks, voted=None, epoch=decision["epoch"])
        return state._replace(pc=frozenset({i}), writes=writes, committed=frozenset(writes))

    def join(self, state, i, decision):
        s = state.servers[i]
        mine = s.disk[0] if s.disk else None
        primary = state.writes
        if mine is not None and not decision.get("sst"):
            if len(mine) > len(primary) and mine[:len(primary)] == primary:
                raise Violation(f"{self.names[i]} joins a primary component behind it (Galera refuses and resets it): {decision['reason']}")
            if primary[:len(mine)] != mine:
                raise Violation(f"{self.names[i]} joins by IST onto writes the primary component lacks: {decision['reason']}")
        runner = next(state.servers[m] for m in state.pc)
        state = self.replace(state, i, power="run", line=runner.line, forks=runner.forks | s.forks, voted=None,
                             epoch=runner.epoch)
        return state._replace(pc=state.pc | {i})

    def restore_view(self, state):
        """pc.recovery: every server back with the same view, the most advanced one's writes for all."""
        held = [s.disk[0] for s in state.servers]
        longest = max(held, key=len)
        if any(longest[:len(w)] != w for w in held):
            raise Violation("pc.recovery restored a view whose members hold diverged writes")
        epoch = max(s.epoch for s in state.servers)
        line = max((s.line for s in state.servers), key=len)
        servers = tuple(s._replace(power="run", voted=None, epoch=epoch, line=line) for s in state.servers)
        return state._replace(servers=servers, pc=frozenset(range(len(self.names))), writes=longest)

    # --- liveness ------------------------------------------------------------
    def recovers(self, state, on):
        """Powering exactly `on` on leads to one primary component of all of them within ROUNDS rounds."""
        for i in range(len(self.names)):
            state = self.power(state, i, "up" if i in on else "off")
        for r in range(ROUNDS):
            state = self.round(state, LONG if r % 2 else 0)
            if state.pc == frozenset(on):
                return True
        return "a person must" in json.dumps(self.simulate(state, LONG))

    def check_liveness(self, state):
        everyone = frozenset(range(len(self.names)))
        sets = {everyone}
        if state.last_pc:
            majority = len(self.names) // 2 + 1
            extra = [i for i in range(len(self.names)) if i not in state.last_pc]
            need = max(0, majority - len(state.last_pc))
            for more in itertools.combinations(extra, need):
                sets.add(frozenset(state.last_pc) | set(more))
        for on in sorted(sets, key=sorted):
            recovered = self.recovers(state, on)
            if recovered is True:
                continue
            if recovered and self.policy == "survivor":
                self.people += 1  # survivor bootstraps gave up each other's writes: a person chooses, as docs/recovery.md says
                continue
            raise Violation(f"no recovery with {sorted(self.names[i] for i in on)} powered on")

    # --- the search ------------------------------------------------------------
    def run(self, depth):
        """Every sequence of events up to `depth`, each state expanded once. Returns (states, transitions)."""
        start = self.initial()
        seen = {start: ()}
        frontier = [start]
        transitions = 0
        for _ in range(depth):
            following = []
            for state in frontier:
                for label, event in self.events(state):
                    transitions += 1
                    try:
                        after = event(state)
                    except Violation as violation:
                        raise Violation(f"{violation} after: {', '.join(seen[state] + (label,))}") from None
                    if after in seen:
                        continue
                    seen[after] = seen[state] + (label,)
                    if after.pc is None and all(s.power == "off" for s in after.servers):
                        try:
                            self.check_liveness(after)
                        except Violation as violation:
                            raise Violation(f"{violation} after: {', '.join(seen[after])}") from None
                    following.append(after)
            frontier = following
        return len(seen), transitions


# Depths, chosen so that the check stays under a minute on two cores (the fast tier): on 3 servers,
# 12 events (9 under survivor, whose forks make more states) reach every sequence of issue 18: an
# orderly stop of all three, two power-ons, two rounds, writes, a survivor bootstrap and the old last
# leaver's return; on 5 servers, 5 events reach a power cut and the return of a majority.
CASES = [(3, "majority", 12, 2), (3, "survivor", 9, 2), (5, "majority", 5, 1), (5, "survivor", 5, 1)]


class ModelCheck(unittest.TestCase):
    pass


def make(servers, policy, depth, writes):
    def check(self):
        names = [f"s{i + 1}" for i in range(servers)]
        model = Model(names, policy, writes)
        started = time.monotonic()
        states, transitions = model.run(depth)
        # Each state is expanded once: every sequence of up to `depth` events passes through these transitions.
        print(f"model check, {servers} servers, policy {policy}: every sequence of up to {depth} events, "
              f"{states} states and {transitions} transitions checked in {time.monotonic() - started:.1f} s"
              f"{f'; {model.people} states where a person must choose' if model.people else ''}")
        self.assertGreater(states, 1000)
    return check


for case in CASES:
    setattr(ModelCheck, f"test_{case[0]}_servers_{case[1]}", make(*case))


if __name__ == "__main__":
    unittest.main()
