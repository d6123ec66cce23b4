// Loops forever for one host, and tries to swallow the interrupt while doing so.
var calls = 0;
function FindProxyForURL(url, host) {
  calls++;
  if (host == "loop.example") {
    for (;;) {
      try { while (true) {} } catch (e) {}
    }
  }
  return "PROXY after-loop.example:" + (3000 + calls);
}
