/**
 * The strace log parser and the WebSocket stream reader the durability rules stand on, against
 * lines as strace 6.1 prints them with `-f -tt -yy -xx` (see support/strace-tracer.ts).
 */
import { describe, expect, it } from 'vitest';
import { parseStraceLog, StraceParseError } from './support/strace-log.js';
import { webSocketMessages } from './support/websocket-frames.js';

/** `-xx` hex of a text: how strace prints every string and path here. */
const hex = (text: string | Buffer) =>
  [...Buffer.from(text)].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join('');

describe('parseStraceLog', () => {
  it('reads an open with its flags, the path made absolute and the fd it returned', () => {
    const [open] = parseStraceLog(
      `12 20:38:17.860011 openat(AT_FDCWD<${hex('/data')}>, "${hex('orders/o1/.entry.json.fleetpatch-tmp-0123456789abcdef')}", O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600) = 21<${hex('/data/orders/o1/.entry.json.fleetpatch-tmp-0123456789abcdef')}>`,
    );
    expect(open).toMatchObject({
      kind: 'open',
      pid: 12,
      ok: true,
      path: '/data/orders/o1/.entry.json.fleetpatch-tmp-0123456789abcdef',
      flags: ['O_WRONLY', 'O_CREAT', 'O_EXCL', 'O_NOFOLLOW', 'O_CLOEXEC'],
      fd: { fd: 21, target: '/data/orders/o1/.entry.json.fleetpatch-tmp-0123456789abcdef' },
      startLine: 1,
      endLine: 1,
    });
  });

  it('reads the bytes a write moved, in hex, plain or octal escapes, and knows when strace cut them', () => {
    const events = parseStraceLog(
      [
        `5 write(3<${hex('/f')}>, "${hex('{"a":1}\n')}", 8) = 8`,
        '5 write(3</f>, "say \\"hi\\"\\n\\t\\\\", 11) = 11',
        '5 write(4<anon_inode:[eventfd]>, "\\1\\0\\0\\0\\0\\0\\0\\0", 8) = 8',
        '5 write(3</f>, "abc"..., 100) = 100',
        '5 write(3</f>, "abcdef", 6) = 2',
      ].join('\n'),
    );
    expect(events.map((e) => (e.kind === 'write' ? [e.data.toString('latin1'), e.complete] : e.kind))).toEqual([
      ['{"a":1}\n', true],
      ['say "hi"\n\t\\', true],
      ['\x01\0\0\0\0\0\0\0', true],
      ['abc', false],
      ['ab', true],
    ]);
    expect(events[0]).toMatchObject({ fd: { fd: 3, target: '/f' } });
  });

  it('joins the iovecs of a writev and a sendmsg, up to the bytes that moved', () => {
    const [writev, sendmsg] = parseStraceLog(
      [
        `9 writev(19<TCP:[127.0.0.1:39152->127.0.0.1:41000]>, [{iov_base="${hex(Buffer.from([0x81, 0x05]))}", iov_len=2}, {iov_base="hello", iov_len=5}], 2) = 6`,
        '9 sendmsg(7<UNIX-STREAM:[1->2]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="ab", iov_len=2}, {iov_base="cd", iov_len=2}], msg_iovlen=2, msg_controllen=0, msg_flags=0}, MSG_NOSIGNAL) = 4',
      ].join('\n'),
    );
    expect(writev).toMatchObject({ kind: 'write', fd: { fd: 19, target: 'TCP:[127.0.0.1:39152->127.0.0.1:41000]' } });
    expect(writev?.kind === 'write' && writev.data).toEqual(Buffer.from([0x81, 0x05, ...Buffer.from('hell')]));
    expect(sendmsg?.kind === 'write' && sendmsg.data.toString()).toBe('abcd');
  });

  it('makes one event of a call split across threads: entered at its first line, returned at its last', () => {
    const events = parseStraceLog(
      [
        '100 fsync(21</d/.t.fleetpatch-tmp-0123456789abcdef> <unfinished ...>',
        '101 read(5<TCP:[1.1.1.1:1->2.2.2.2:2]>,  <unfinished ...>',
        '100 <... fsync resumed>) = 0',
        '101 <... read resumed>"hi", 65536) = 2',
        '102 rename("/d/.t.fleetpatch-tmp-0123456789abcdef", "/d/t") = 0',
      ].join('\n'),
    );
    expect(events).toMatchObject([
      { kind: 'sync', fd: { target: '/d/.t.fleetpatch-tmp-0123456789abcdef' }, startLine: 1, endLine: 3 },
      { kind: 'read', startLine: 2, endLine: 4 },
      { kind: 'rename', from: '/d/.t.fleetpatch-tmp-0123456789abcdef', to: '/d/t', startLine: 5, endLine: 5 },
    ]);
  });

  it('resolves renameat2, unlinkat and mkdirat against their directory fds; an rmdir is not an unlink', () => {
    const events = parseStraceLog(
      [
        '7 renameat2(AT_FDCWD</w>, "a/.x.tmp", 3</w/a>, "x", RENAME_NOREPLACE) = 0',
        '7 unlinkat(4</etc>, "app.conf", 0) = 0',
        '7 unlinkat(4</etc>, "old.d", AT_REMOVEDIR) = 0',
        '7 mkdirat(AT_FDCWD</w>, "orders", 0700) = 0',
      ].join('\n'),
    );
    expect(events).toMatchObject([
      { kind: 'rename', from: '/w/a/.x.tmp', to: '/w/a/x' },
      { kind: 'unlink', path: '/etc/app.conf' },
      { kind: 'mkdir', path: '/w/orders' },
    ]);
  });

  it('reads failures, deleted files, devices and decoded netlink buffers without tripping', () => {
    const events = parseStraceLog(
      [
        `3 read(3<${hex('/dev/kmsg')}<char 1:11>>, 0x55dfd3c010a8, 8191) = -1 EAGAIN (Resource temporarily unavailable)`,
        `3 fsync(20<${hex('/db-shm')}>(deleted)) = 0`,
        '3 sendto(18<NETLINK:[ROUTE:12760]>, [{nlmsg_len=20, nlmsg_type=RTM_GETLINK}, {ifi_family=AF_UNSPEC, ifi_index=if_nametoindex("lo"), ...}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20',
        '3 mkdir("/w/orders", 0700) = -1 EEXIST (File exists)',
      ].join('\n'),
    );
    expect(events).toMatchObject([
      { kind: 'read', ok: false, errno: 'EAGAIN', fd: { target: '/dev/kmsg' } },
      { kind: 'sync', ok: true, fd: { target: '/db-shm' } },
      { kind: 'write', ok: true, complete: false, fd: { target: 'NETLINK:[ROUTE:12760]' } },
      { kind: 'mkdir', ok: false, errno: 'EEXIST' },
    ]);
  });

  it('takes a copy made in the kernel for a write to its destination whose bytes it cannot show', () => {
    const events = parseStraceLog(
      [
        '6 copy_file_range(21</cache/a.deb>, NULL, 22</snap/a.deb>, NULL, 9223372035781033984, 0) = 1024',
        '6 sendfile(22</snap/a.deb>, 21</cache/a.deb>, [1024] => [2048], 1024) = 1024',
      ].join('\n'),
    );
    expect(events).toMatchObject([
      { kind: 'write', fd: { fd: 22, target: '/snap/a.deb' }, complete: false },
      { kind: 'write', fd: { fd: 22, target: '/snap/a.deb' }, complete: false },
    ]);
  });

  it('skips exits, signals, calls it does not model and calls cut short by a death', () => {
    const events = parseStraceLog(
      [
        '3 20:46:49.572920 +++ exited with 0 +++',
        '3 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=9, si_uid=0, si_status=0} ---',
        '3 futex(0x7f, FUTEX_WAIT_PRIVATE, 0, NULL) = 0',
        '4 write(1</dev/null>, "x", 1) = ?',
        '4 +++ killed by SIGKILL +++',
      ].join('\n'),
    );
    expect(events).toEqual([]);
  });

  it('refuses a modelled call it cannot read, naming the line', () => {
    expect(() => parseStraceLog('1 close(3</x>) = 0\n1 rename("/a" "/b") = 0')).toThrow(StraceParseError);
    expect(() => parseStraceLog('1 close(3</x>) = 0\n1 rename("/a" "/b") = 0')).toThrow(/line 2/);
  });
});

describe('webSocketMessages', () => {
  const server = 'TCP:[127.0.0.1:4000->127.0.0.1:51000]';
  const upgrade = 'GET /v1/agent/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  const switched = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  const frame = (text: string, mask?: Buffer, options: { fin?: boolean; opcode?: number } = {}) => {
    const payload = Buffer.from(text);
    const head = [((options.fin ?? true) ? 0x80 : 0) | (options.opcode ?? 1)];
    const length = payload.length;
    if (length < 126) head.push((mask ? 0x80 : 0) | length);
    else head.push((mask ? 0x80 : 0) | 126, length >> 8, length & 0xff);
    if (!mask) return Buffer.concat([Buffer.from(head), payload]);
    const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)));
    return Buffer.concat([Buffer.from(head), mask, masked]);
  };
  const io = (call: 'write' | 'read', bytes: Buffer | string, fd = server) =>
    `1 ${call}(21<${fd}>, "${hex(bytes)}", ${Buffer.byteLength(bytes)}) = ${Buffer.byteLength(bytes)}`;

  it("reads a server's frames and a client's masked ones, across and within calls", () => {
    const mask = Buffer.from([0x4a, 0x94, 0xb5, 0xed]);
    const result = frame('{"type":"order.result","orderId":"o1"}', mask);
    const long = JSON.stringify({ type: 'order.apply', orderId: 'o2', pad: 'x'.repeat(300) });
    const { messages, problems } = webSocketMessages(
      parseStraceLog(
        [
          io('read', upgrade),
          io('write', switched),
          io('read', result.subarray(0, 5)),
          io('read', result.subarray(5)),
          io('write', Buffer.concat([frame(long), frame('{"type":"order.ack","orderId":"o1"}')])),
        ].join('\n'),
      ),
    );
    expect(problems).toEqual([]);
    expect(messages.map((m) => [m.direction, m.json?.type, m.startLine, m.endLine])).toEqual([
      ['received', 'order.result', 3, 4],
      ['sent', 'order.apply', 5, 5],
      ['sent', 'order.ack', 5, 5],
    ]);
    expect(messages[1]?.text).toBe(long);
  });

  it('joins a fragmented message and passes over pings', () => {
    const { messages } = webSocketMessages(
      parseStraceLog(
        [
          io('write', switched),
          io('write', frame('{"type":"hel', undefined, { fin: false })),
          io('write', frame('', undefined, { opcode: 0x9 })),
          io('write', frame('lo"}', undefined, { opcode: 0 })),
        ].join('\n'),
      ),
    );
    expect(messages.map((m) => [m.text, m.startLine, m.endLine])).toEqual([['{"type":"hello"}', 2, 4]]);
  });

  it('leaves plain HTTP connections alone and starts afresh once a socket is closed', () => {
    const api = 'TCP:[127.0.0.1:4000->127.0.0.1:52000]';
    const { messages, problems } = webSocketMessages(
      parseStraceLog(
        [
          io('read', 'GET /v1/rollouts HTTP/1.1\r\nHost: x\r\n\r\n', api),
          io('write', `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}${frame('{"type":"x"}').toString('latin1')}`, api),
          io('write', switched),
          io('write', frame('{"type":"welcome"}')),
          `1 close(21<${server}>) = 0`,
          io('write', 'HTTP/1.1 400 Bad Request\r\n\r\n'),
          io('write', frame('{"type":"not a websocket any more"}')),
        ].join('\n'),
      ),
    );
    expect(problems).toEqual([]);
    expect(messages.map((m) => m.json?.type)).toEqual(['welcome']);
  });

  it('reports a stream it cannot read instead of passing over it', () => {
    const cut = `1 write(21<${server}>, "${hex(switched)}"..., 9000) = 9000`;
    const deflated = Buffer.from([0xc1, 0x02, 0x01, 0x02]);
    expect(webSocketMessages(parseStraceLog(cut)).problems).toEqual([
      expect.stringMatching(/line 1: strace cut the bytes of the sent stream/),
    ]);
    expect(
      webSocketMessages(parseStraceLog([io('write', switched), io('write', deflated)].join('\n'))).problems,
    ).toEqual([expect.stringMatching(/RSV bits set/)]);
  });
});
