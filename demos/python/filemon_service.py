"""The FileMonitor service of RPyC's tutorial ("Events"), ported to
Python 3 and rpyc 6: rpyc.async became rpyc.async_, and rpyc.SlaveService
became rpyc.Service. In rpyc 6 SlaveService is classic mode, which gives
the client the whole interpreter and ignores exposed_ names (the
tutorial's `conn.root.FileMonitor` fails there); the part of its access
the tutorial's client relies on, reading the monitor's public attributes,
is the server's allow_public_attrs. Run it with rpyc 6.0.2:

    python3 demos/python/filemon_service.py [--port 18871]

It prints the port it listens on once it listens (port 0 picks a free one).
netref's tests run it; README.md ("Talking to Python RPyC") shows a Rust
client of it.
"""

import rpyc
import os
import sys
import time
from threading import Thread

class FileMonitorService(rpyc.Service):
    class exposed_FileMonitor(object):   # exposing names is not limited to methods :)
        def __init__(self, filename, callback, interval = 1):
            self.filename = filename
            self.interval = interval
            self.last_stat = None
            self.callback = rpyc.async_(callback)   # create an async callback
            self.active = True
            self.thread = Thread(target = self.work)
            self.thread.start()
        def exposed_stop(self):   # this method has to be exposed too
            self.active = False
            self.thread.join()
        def work(self):
            while self.active:
                stat = os.stat(self.filename)
                if self.last_stat is not None and self.last_stat != stat:
                    self.callback(self.last_stat, stat)   # notify the client of the change
                self.last_stat = stat
                time.sleep(self.interval)

if __name__ == "__main__":
    from rpyc.utils.server import ThreadedServer
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 18871
    server = ThreadedServer(FileMonitorService, hostname = "127.0.0.1", port = port,
                            protocol_config = {"allow_public_attrs": True})
    server._listen()   # listen now, so that the port printed is ready
    print(server.port, flush = True)
    server.start()
