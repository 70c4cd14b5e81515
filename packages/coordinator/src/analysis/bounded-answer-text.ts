/**
 * A fetch answer's body as text, or `undefined` when it is more than `maxBytes`. The body is
 * counted as it arrives and the reading stops at the first byte past the cap: the server chooses
 * how much it sends, and `res.text()` would hold all of it (an endless answer, all the memory there
 * is) before any length could be checked. A declared `content-length` over the cap is refused before
 * a byte of the body is read. Either way the body is cancelled, which closes the connection.
 */
export async function boundedAnswerText(res: Response, maxBytes: number): Promise<string | undefined> {
  const body = res.body;
  if (!body) return '';
  if (Number(res.headers.get('content-length')) > maxBytes) {
    await body.cancel().catch(() => undefined);
    return undefined;
  }
  const reader = body.getReader();
  // With `stream: true` a character split between two chunks waits for its other bytes.
  const decoder = new TextDecoder();
  let bytes = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    bytes += value.byteLength;
    if (bytes > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    text += decoder.decode(value, { stream: true });
  }
}
