// A corporate-style PAC: intranet DIRECT, downloads through their own proxy, two parents for
// everything else (the second for failover), DIRECT as the very last resort for plain http.
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || dnsDomainIs(host, ".intranet.example"))
    return "DIRECT";
  if (shExpMatch(url, "http://*.downloads.example/*"))
    return "PROXY dl-proxy.example:8081";
  if (isInNet(host, "10.0.0.0", "255.0.0.0"))
    return "DIRECT";
  if (localHostOrDomainIs(host, "www.partner.example"))
    return "SOCKS5 socks.example:1080";
  if (url.substring(0, 6) == "https:")
    return "PROXY parent1.example:3128; PROXY parent2.example:3128";
  return "PROXY parent1.example:3128; PROXY parent2.example:3128; DIRECT";
}
