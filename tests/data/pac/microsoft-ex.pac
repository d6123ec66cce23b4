// Microsoft's IPv6-aware entry point, preferred over FindProxyForURL when present.
function FindProxyForURL(url, host) {
  return "PROXY should-not-be-used.example:1";
}
function FindProxyForURLEx(url, host) {
  if (isResolvableEx(host) && isInNetEx(host, "fd00:1::/32"))
    return "PROXY v6-proxy.example:3128";
  return "PROXY [fd00:2::1]:3128; DIRECT";
}
