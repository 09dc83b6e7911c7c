"""The client side of RPyC's tutorial ("Events"), its transcript as a
script, for the FileMonitor service written in Rust (demos/filemon):

    cargo run -p filemon -- server &
    python3 demos/python/filemon_client.py [--port 18871] [/tmp/floop.bloop]

Where the transcript waits for the other thread to print, this waits for
the callback (a semaphore); the Rust service looks at the file before
file_monitor() returns, so the transcript's first wait is not needed. The
stat results are the Rust service's: a size and a modification time.
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
changed = threading.Semaphore(0)

f = open(filename, "w")
conn = rpyc.connect("localhost", port)
bgsrv = rpyc.BgServingThread(conn)  # creates a bg thread to process incoming events
def on_file_changed(oldstat, newstat):
    print("file changed")
    print("    old stat: %s" % (oldstat,))
    print("    new stat: %s" % (newstat,))
    changed.release()
mon = conn.root.file_monitor(filename, on_file_changed) # create a filemon

f.write("shmoop") # change size
f.flush()
changed.acquire()

f.write("groop") # change size
f.flush()
changed.acquire()

f.close()
f = open(filename, "w")
changed.acquire()

mon.stop()
bgsrv.stop()
conn.close()
print("bye")
