import ipaddr from 'ipaddr.js';

/**
 * The key every per-IP limit counts by. An IPv6 client usually holds a whole /64 and can pick any address in it,
 * so it is counted by that /64; an IPv4 address (also one mapped into IPv6) counts as itself.
 */
export function ipLimitKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.parse(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  return `${v6.parts.slice(0, 4).map((part) => part.toString(16)).join(':')}::/64`;
}
