"""A throwaway 3-node RabbitMQ cluster on this machine, for scenario 8 (leader loss).

Started from the locally installed RabbitMQ (3.10) next to the shared node
`rabbit@localhost` (5672/15672/25672), which it never touches: every node here has its own
name (`fwc1@localhost`...), AMQP port, distribution port, data/log dirs, config file,
env file and (empty) plugins file under a tmp dir. No management plugin.

Nodes run as the `rabbitmq` user with HOME=/var/lib/rabbitmq, so they share the Erlang
cookie `/usr/sbin/rabbitmqctl` uses (as root it `su`s to rabbitmq); the CLI is always
called with `-n <node>`. Nodes 2 and 3 join node 1 (`stop_app`, `join_cluster`,
`start_app`). `stop()` tears everything down whatever state it is in: `rabbitmqctl -n X
stop`, then SIGKILL of any beam process left that runs one of *these* node names and was
started by this process (matched on RABBITMQ_NODENAME and FW_CLUSTER_OWNER in its
environment, never by a broad pattern), then the tmp dir is removed.

`Cluster(install=broker4_install())` builds the same cluster from RabbitMQ 4.0 in the
trixie root of scripts/broker4 (nodes `rabbit4a..c@localhost`, AMQP 5711-5713, distribution
25711-25713, their dirs under the root's /tmp): every node and CLI call runs through
`scripts/in-root` (chroot as the root's rabbitmq user, /proc in a private mount namespace),
with the root's cookie (the 4.0 CLI on Erlang 27).
`cluster_for(broker)` picks the install of the broker under test (FRAMEWORK_TEST_BROKER).

`python -m tests.chaos.cluster [4.0]` starts a cluster, prints its status and tears it down
(a smoke check of the harness on a new machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real script (no su wrapper)
RABBITMQCTL = "rabbitmqctl"  # the PATH wrapper: as root it su's to rabbitmq (its cookie)
RABBITMQ_QUEUES = "rabbitmq-queues"
RABBITMQ_USER = "rabbitmq"
COOKIE_HOME = "/var/lib/rabbitmq"  # the cookie the CLI uses: /var/lib/rabbitmq/.erlang.cookie

OWNER_VAR = "FW_CLUSTER_OWNER"
SHARED_NODE_PORTS = {5672, 15672, 25672}  # rabbit@localhost: never ours


@dataclass(frozen=True)
class Install:
    """Where a RabbitMQ lives and how its nodes and CLIs are started.

    `wrap` prefixes every program (e.g. a chroot into a root); `inside` is how the node sees
    a path of this machine (identity on the host); `uid`/`gid` run the server process, unless
    the wrap switches the user itself (`run_as_root`)."""

    name: str
    server: str
    ctl: str
    queues: str
    uid: int
    gid: int
    cookie_home: str
    tmp_parent: Path | None = None  # where node dirs go (None: the system tmp dir)
    root: Path | None = None  # the chroot, if any
    wrap: tuple[str, ...] = ()
    run_as_root: bool = False

    def inside(self, path: Path) -> str:
        if self.root is None:
            return str(path)
        return "/" + str(path.relative_to(self.root))

    def command(self, program: str, *args: str) -> list[str]:
        return [*self.wrap, program, *args]


def host_install() -> Install:
    """The machine's RabbitMQ (3.10): the PATH rabbitmqctl su's to rabbitmq (its cookie)."""
    account = pwd.getpwnam(RABBITMQ_USER)
    return Install(
        "3.10",
        RABBITMQ_SERVER,
        RABBITMQCTL,
        RABBITMQ_QUEUES,
        account.pw_uid,
        account.pw_gid,
        COOKIE_HOME,
    )


IN_ROOT = Path(__file__).parents[2] / "scripts" / "in-root"
BROKER4_ROOT = Path(os.environ.get("BROKER4_DIR", Path(__file__).parents[2] / ".broker4"), "root")


def broker4_install(root: Path = BROKER4_ROOT) -> Install:
    """RabbitMQ 4.0 of the scripts/broker4 root, run through chroot as its rabbitmq user."""
    fields = next(
        (
            line.split(":")
            for line in (root / "etc/passwd").read_text().splitlines()
            if line.startswith(f"{RABBITMQ_USER}:")
        ),
        None,
    )
    if fields is None:
        raise ClusterUnavailable(f"no rabbitmq user in {root}: run scripts/broker4 build")
    uid, gid = int(fields[2]), int(fields[3])
    bin_dir = "/usr/lib/rabbitmq/bin"
    return Install(
        "4.0",
        f"{bin_dir}/rabbitmq-server",
        f"{bin_dir}/rabbitmqctl",
        f"{bin_dir}/rabbitmq-queues",
        uid,
        gid,
        "/var/lib/rabbitmq",
        tmp_parent=root / "tmp",
        root=root,
        # chroot as the root's rabbitmq user, /proc mounted in a private mount namespace
        wrap=(str(IN_ROOT), str(root)),
        run_as_root=True,
    )


def cluster_for(broker: str | None = None) -> Cluster:
    """The throwaway cluster of the broker under test (FRAMEWORK_TEST_BROKER, default 3.10)."""
    broker = broker or os.environ.get("FRAMEWORK_TEST_BROKER", "3.10")
    if broker == "4.0":
        return Cluster(
            install=broker4_install(),
            base_port=5711,
            dist_base_port=25711,
            prefix="rabbit4",
            names="abc",
        )
    return Cluster()


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started on this machine (the message says precisely why)."""


@dataclass
class Node:
    """One node of the throwaway cluster."""

    index: int
    name: str  # fwc1@localhost
    amqp_port: int
    dist_port: int
    base: Path  # its tmp dir
    install: Install | None = None
    process: asyncio.subprocess.Process | None = None

    def inside(self, path: Path) -> str:
        return path.as_posix() if self.install is None else self.install.inside(path)

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def pid_file(self) -> Path:
        return self.base / "rabbit.pid"

    @property
    def startup_log(self) -> Path:
        return self.base / "startup.log"

    def env(self) -> dict[str, str]:
        at = self.inside
        return {
            "PATH": "/usr/lib/rabbitmq/bin:" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"),
            "HOME": self.install.cookie_home if self.install else COOKIE_HOME,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": at(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": at(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": at(self.base / "log"),
            "RABBITMQ_PID_FILE": at(self.pid_file),
            "RABBITMQ_CONFIG_FILE": at(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": at(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": at(self.base / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            OWNER_VAR: str(os.getpid()),  # which test process started it (leftover checks)
            # distribution listens on loopback only, like the shared node; one scheduler
            # each so three extra nodes do not starve the shared one on a 2-CPU machine
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-kernel inet_dist_use_interface {127,0,0,1} +S 1:1 +sbwt none"
            ),
        }

    def write_files(self) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq-env.conf").write_text("# throwaway node: no shared env\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "advanced.config").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
            "disk_free_limit.absolute = 50MB\n"
        )


@dataclass
class Cluster:
    """Three nodes `fwc1..3@localhost` on AMQP ports `base_port..+2`."""

    size: int = 3
    base_port: int = 5701
    dist_base_port: int = 25701
    prefix: str = "fwc"
    names: str = ""  # node i is prefix + names[i] (e.g. "abc"), else prefix + (i + 1)
    install: Install | None = None  # None: the machine's RabbitMQ (host_install())
    user: str = "guest"
    password: str = "guest"
    tmp: Path | None = None
    nodes: list[Node] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # every CLI call and its outcome

    def __post_init__(self) -> None:
        ports = {self.base_port + i for i in range(self.size)} | {
            self.dist_base_port + i for i in range(self.size)
        }
        if ports & SHARED_NODE_PORTS:
            raise ValueError(
                f"ports {sorted(ports & SHARED_NODE_PORTS)} belong to the "
                "shared node rabbit@localhost"
            )

    # ---- addresses -----------------------------------------------------------------------

    def url(self, index: int) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.nodes[index].amqp_port}/"

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self, timeout: float = 90.0) -> Cluster:
        """Start the nodes, join 2..n to node 1, check all are running members."""
        self._preflight()
        install = self.install = self.install or host_install()
        self.tmp = Path(tempfile.mkdtemp(prefix="fw-cluster-", dir=install.tmp_parent))
        for i in range(self.size):
            short = self.node_short(i)
            node = Node(
                i,
                f"{short}@localhost",
                self.base_port + i,
                self.dist_base_port + i,
                self.tmp / short,
                install,
            )
            node.write_files()
            self.nodes.append(node)
        for path in [self.tmp, *self.tmp.rglob("*")]:
            os.chown(path, install.uid, install.gid)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self._start_node(n) for n in self.nodes))
                await asyncio.gather(*(self._await_node(n) for n in self.nodes))
                seed = self.nodes[0].name
                for node in self.nodes[1:]:
                    await self.ctl(node.name, "stop_app")
                    await self.ctl(node.name, "join_cluster", seed)
                    await self.ctl(node.name, "start_app")
                running = await self.running_nodes()
        except TimeoutError as exc:
            raise ClusterUnavailable(
                f"the {self.size}-node cluster did not come up within {timeout:g}s:\n"
                f"{self.diagnostics()}"
            ) from exc
        except ClusterUnavailable:
            raise
        except Exception as exc:
            raise ClusterUnavailable(f"{exc}\n{self.diagnostics()}") from exc
        if sorted(running) != sorted(n.name for n in self.nodes):
            raise ClusterUnavailable(
                f"cluster formed with running nodes {running}, "
                f"expected {[n.name for n in self.nodes]}"
            )
        return self

    async def stop(self) -> None:
        """Stop every node, kill what is left of them, remove the tmp dir. Never raises."""
        for node in self.nodes:
            if not self._beam_pids(node, owner=os.getpid()):
                continue  # not running, or not ours: never stop another run's node
            with contextlib.suppress(Exception):
                await self.ctl(node.name, "stop", timeout=30)
        for node in self.nodes:
            self._kill_leftovers(node)
            if node.process is not None and node.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(node.process.wait(), 10)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def __aenter__(self) -> Cluster:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def node_short(self, index: int) -> str:
        return self.prefix + (self.names[index] if self.names else str(index + 1))

    # ---- faults --------------------------------------------------------------------------

    async def stop_app(self, name: str) -> None:
        """`rabbitmqctl -n name stop_app`: the node stays up, RabbitMQ on it stops."""
        await self.ctl(name, "stop_app")

    def kill(self, name: str) -> int:
        """SIGKILL the node's beam process (a crash). Returns its pid."""
        pids = list(self._beam_pids(self.node(name), owner=os.getpid()))
        if not pids:
            raise RuntimeError(f"no beam process found for {name}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids[0]

    # ---- queries -------------------------------------------------------------------------

    async def running_nodes(self, via: str | None = None) -> list[str]:
        out = await self.ctl(via or self.nodes[0].name, "cluster_status", "--formatter", "json")
        status = json.loads(out)
        return [str(n) for n in status.get("running_nodes", [])]

    async def queues(self, via: str) -> list[dict[str, Any]]:
        """`list_queues name type leader members online` as seen from node `via`."""
        out = await self.ctl(
            via, "list_queues", "name", "type", "leader", "members", "online", "--formatter", "json"
        )
        return list(json.loads(out))

    async def queue_info(self, queue: str, via: str | None = None) -> dict[str, Any]:
        for info in await self.queues(via or self.nodes[0].name):
            if info.get("name") == queue:
                return info
        raise KeyError(f"queue {queue} not found in the cluster")

    async def leader(self, queue: str, via: str | None = None) -> str:
        info = await self.queue_info(queue, via)
        return str(info["leader"])

    async def wait_new_leader(
        self, queue: str, old: str, via: str, timeout: float = 60.0
    ) -> tuple[str, float]:
        """Wait until `queue` reports a leader other than `old`; returns it and the wait."""
        started = time.monotonic()
        last: Any = None
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):
                info = await self.queue_info(queue, via)
                last = info
                leader = str(info.get("leader", ""))
                if leader and leader != old and leader in {n.name for n in self.nodes}:
                    return leader, time.monotonic() - started
            await asyncio.sleep(0.2)
        raise AssertionError(f"{queue}: no new leader after {timeout:g}s (last {last})")

    async def quorum_status(self, queue: str, via: str) -> str:
        return await self.run(self._install().queues, "-n", via, "quorum_status", queue)

    # ---- CLI -----------------------------------------------------------------------------

    async def ctl(self, node: str, *args: str, timeout: float = 60.0) -> str:
        return await self.run(self._install().ctl, "-n", node, *args, timeout=timeout)

    def _install(self) -> Install:
        return self.install or host_install()

    async def run(self, program: str, *args: str, timeout: float = 60.0) -> str:
        if "-n" not in args:  # never address the shared node by default
            raise ValueError("cluster CLI calls must name their node with -n")
        began = time.monotonic()
        install = self._install()
        env = None
        if install.root is not None:  # the root's CLI, its HOME (cookie), a clean env
            env = {
                "HOME": install.cookie_home,
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            }
        process = await asyncio.create_subprocess_exec(
            *install.command(program, *args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            self.log.append(f"{program} {' '.join(args)}: timed out after {timeout:g}s")
            raise
        text = out.decode(errors="replace")
        self.log.append(
            f"{program} {' '.join(args)}: rc={process.returncode} {time.monotonic() - began:.1f}s"
        )
        if process.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed (rc={process.returncode}): {text[-1500:]}"
            )
        return text

    # ---- internals -----------------------------------------------------------------------

    def _preflight(self) -> None:
        """Reasons this machine cannot run the cluster, found before starting anything."""
        problems = []
        if os.geteuid() != 0:
            problems.append("not root: nodes must run as the rabbitmq user with its cookie")
        if self.install is not None and self.install.root is not None:
            root = self.install.root
            if not (root / self.install.server.lstrip("/")).exists():
                problems.append(f"{root} has no RabbitMQ: run scripts/broker4 build")
        else:
            if not Path(RABBITMQ_SERVER).exists():
                problems.append(f"{RABBITMQ_SERVER} not found (RabbitMQ not installed here)")
            if shutil.which(RABBITMQCTL) is None:
                problems.append("rabbitmqctl not on PATH")
            try:
                pwd.getpwnam(RABBITMQ_USER)
            except KeyError:
                problems.append("no rabbitmq user")
            if not Path(COOKIE_HOME, ".erlang.cookie").exists():
                problems.append(f"{COOKIE_HOME}/.erlang.cookie missing (the CLI's cookie)")
        self._kill_leftovers_of_earlier_runs()
        busy = [p for p in self._all_ports() if _port_in_use(p)]
        if busy:
            problems.append(
                f"ports already in use: {busy} (another run of this scenario "
                "going on, or something else listening there)"
            )
        if problems:
            raise ClusterUnavailable("; ".join(problems))

    def _all_ports(self) -> list[int]:
        return [p for i in range(self.size) for p in (self.base_port + i, self.dist_base_port + i)]

    async def _start_node(self, node: Node) -> None:
        log = node.startup_log.open("wb")
        install = self._install()
        as_user: dict[str, Any] = (
            {}
            if install.run_as_root
            else {"user": install.uid, "group": install.gid, "extra_groups": []}
        )
        node.process = await asyncio.create_subprocess_exec(
            *install.command(install.server),
            cwd=str(node.base),
            env=node.env(),
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
        log.close()

    async def _await_node(self, node: Node) -> None:
        """Wait for the pid file and the RabbitMQ application (`rabbitmqctl wait`)."""
        while not node.pid_file.exists():
            if node.process is not None and node.process.returncode is not None:
                raise ClusterUnavailable(
                    f"{node.name} exited with {node.process.returncode} during start-up:\n"
                    f"{_tail(node.startup_log)}"
                )
            await asyncio.sleep(0.2)
        await self.ctl(node.name, "wait", node.inside(node.pid_file), "--timeout", "60", timeout=70)

    def _beam_pids(self, node: Node, owner: int | None = None) -> dict[int, int]:
        """beam processes of exactly this node name -> the pid of the process that started
        them. RabbitMQ 3.10 names the node at boot (no -sname on the command line), so
        match the RABBITMQ_NODENAME it was started with, from its environment; with
        `owner`, only nodes started by that process."""
        wanted = f"RABBITMQ_NODENAME={node.name}".encode()
        found = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0]
                if not Path(argv0.decode(errors="replace")).name.startswith("beam"):
                    continue
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted not in environ:
                continue
            started_by = next(
                (
                    int(v.split(b"=", 1)[1])
                    for v in environ
                    if v.startswith(OWNER_VAR.encode() + b"=")
                ),
                0,
            )
            if owner is None or started_by == owner:
                found[int(proc.name)] = started_by
        return found

    def _kill_leftovers_of_earlier_runs(self) -> None:
        """A run killed before its teardown (e.g. a pytest timeout) leaves nodes with these
        names behind: kill those whose starting process is gone. Nodes of a run still
        going (another checkout running this scenario) are left alone; the port check
        then says so."""
        for i in range(self.size):
            node = Node(i, f"{self.node_short(i)}@localhost", 0, 0, Path("/nonexistent"))
            for pid, owner in self._beam_pids(node).items():
                if owner and _alive(owner):
                    continue
                self.log.append(f"killed {node.name} (pid {pid}) left by dead run {owner}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if any(_port_in_use(p) for p in self._all_ports()):
            time.sleep(1.0)  # the kernel closes the killed nodes' listeners

    def _kill_leftovers(self, node: Node) -> None:
        for pid in self._beam_pids(node, owner=os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def diagnostics(self) -> str:
        parts = ["cli calls:", *self.log[-20:]]
        for node in self.nodes:
            parts.append(f"--- {node.name} startup log")
            parts.append(_tail(node.startup_log))
            logs = sorted((node.base / "log").glob("*.log"))
            for log in logs[:1]:
                parts.append(f"--- {log}")
                parts.append(_tail(log))
        return "\n".join(parts)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(none)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _smoke(broker: str | None) -> None:
    async with cluster_for(broker) as cluster:
        print("running:", await cluster.running_nodes())
        for node in cluster.nodes:
            print(node.name, cluster.url(node.index))
        print("\n".join(cluster.log))


if __name__ == "__main__":
    import sys

    asyncio.run(_smoke(sys.argv[1] if len(sys.argv) > 1 else None))
