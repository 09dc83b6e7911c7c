"""The client side of RPyC's tutorial ("Events"), its transcript as a
script, for the FileMonitor service written in Rust (demos/filemon):

    cargo run -p filemon -- server &
    python3 demos/python/filemon_client.py [--port 18871] [/tmp/floop.bloop]

Where the transcript waits for the other thread to print, this waits for
the callback to report the size the change left (a condition): a monitor
that polls stat can report one write as two changes, the kernel making
the new size and the new modification time visible at different moments.
The Rust service looks at the file before file_monitor() returns, so the
transcript's first wait is not needed. The stat results are the Rust
service's: a size and a modification time.
"""

import sys
import threading

import rpyc

args = sys.argv[1:]
port = 18871
if "--port" in args:
    i = args.index("--port")
    port = int(args[i + 1])
    del args[i:i + 2]
filename = args[0] if args else "/tmp/floop.bloop"
changed = threading.Condition()
sizes = []

f = open(filename, "w")
conn = rpyc.connect("localhost", port)
bgsrv = rpyc.BgServingThread(conn)  # creates a bg thread to process incoming events
def on_file_changed(oldstat, newstat):
    print("file changed")
    print("    old stat: %s" % (oldstat,))
    print("    new stat: %s" % (newstat,))
    with changed:
        sizes.append(dict(newstat)["size"])
        changed.notify()
def wait_for_size(size):
    with changed:
        changed.wait_for(lambda: sizes and sizes[-1] == size)
mon = conn.root.file_monitor(filename, on_file_changed) # create a filemon

f.write("shmoop") # change size
f.flush()
wait_for_size(6)

f.write("groop") # change size
f.flush()
wait_for_size(11)

f.close()
f = open(filename, "w")
wait_for_size(0)

mon.stop()
bgsrv.stop()
conn.close()
print("bye")
