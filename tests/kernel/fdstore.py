#!/usr/bin/env python3
"""systemd's part in a restart, for the real-kernel suite's case 14 (the guest has no systemd):
runs one service as a Type=notify unit with FileDescriptorStoreMax=1 and Restart=always,
by the protocols systemd documents (sd_notify(3), sd_listen_fds(3)).

    fdstore.py <notify socket> <pid file> <rc file> <log> <command>...

The service gets $NOTIFY_SOCKET; a descriptor it sends with FDSTORE=1 is kept (one: as
FileDescriptorStoreMax=1) and handed to the next instance as descriptor 3, with LISTEN_FDS=1,
LISTEN_FDNAMES (its FDNAME) and LISTEN_PID set to that instance's pid. When an instance exits,
the next one starts at once, as `systemctl restart` does after the stop. SIGTERM to this
process is `systemctl stop`: the service gets SIGTERM, is not started again, and the store is
flushed (the descriptor closed). The pid file names the running instance; the rc file gets the
last exit status when this process ends.
"""
import array
import os
import select
import signal
import socket
import sys


def main():
    notify_path, pid_file, rc_file, log_path = sys.argv[1:5]
    command = sys.argv[5:]
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    stored = None  # (fd, name)
    stopping = False

    def start():
        """Forks and executes the command, the stored descriptor as 3: no shell, no
        subprocess machinery, so that the restart costs what systemd's would."""
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        if stored is not None:
            env.update(LISTEN_FDS="1", LISTEN_FDNAMES=stored[1])
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                if stored is not None:
                    os.dup2(stored[0], 3)
                    os.closerange(4, 1024)
                else:
                    os.closerange(3, 1024)
                env["LISTEN_PID"] = str(os.getpid())
                os.execve(command[0], command, env)
            finally:
                os._exit(127)
        os.close(log)
        with open(pid_file + ".new", "w") as out:
            out.write(f"{pid}\n")
        os.rename(pid_file + ".new", pid_file)
        return pid

    child = start()
    # SIGCHLD (an instance exited) and SIGTERM wake the loop at once, through this pipe.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def stop(*_):
        nonlocal stopping
        stopping = True
        os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    rc = None
    while True:
        ready, _, _ = select.select([notify, wake_read], [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 512)
        if notify in ready:
            message, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
            fields = dict(line.split("=", 1) for line in message.decode().split("\n") if "=" in line)
            fds = array.array("i")
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            if fields.get("FDSTORE") == "1" and fds:
                if stored is not None:
                    os.close(stored[0])
                stored = (fds[0], fields.get("FDNAME", "stored"))
                for extra in fds[1:]:
                    os.close(extra)
            else:
                for fd in fds:
                    os.close(fd)
        # The notifications an exiting instance sent are all read before it counts as gone.
        if notify in ready:
            continue
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == 0:
            continue
        rc = os.waitstatus_to_exitcode(status)
        if stopping:
            break
        print(f"fdstore: instance {child} exited {rc}; starting the next", flush=True)
        child = start()
    if stored is not None:
        os.close(stored[0])
    with open(rc_file, "w") as out:
        out.write(f"{rc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
