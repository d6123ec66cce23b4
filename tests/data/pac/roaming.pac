// In the office (10.20/16) or on the VPN (fd00:20::/32) use the parent; at home go DIRECT.
function FindProxyForURL(url, host) {
  if (isInNet(myIpAddress(), "10.20.0.0", "255.255.0.0"))
    return "PROXY office-proxy.example:8080";
  if (isInNetEx(myIpAddressEx(), "fd00:20::/32"))
    return "PROXY vpn-proxy.example:8080";
  return "DIRECT";
}
