/** Meeting codes: the slug itself (`abc-defg-hij`) or any link that holds `/r/<slug>`. */
const SLUG = /^[a-z0-9]+(-[a-z0-9]+)*$/;

export function parseMeetingCode(input: string): string | null {
  const text = input.trim();
  if (!text) return null;
  const inLink = /\/r\/([^/?#\s]+)/.exec(text);
  const candidate = (inLink ? decodeURIComponent(inLink[1] ?? "") : text).toLowerCase();
  return candidate.length >= 3 && candidate.length <= 63 && SLUG.test(candidate) ? candidate : null;
}

/** The link to a meeting, on this page's origin. */
export function meetingLink(slug: string, origin: string = location.origin): string {
  return `${origin}/r/${slug}`;
}
