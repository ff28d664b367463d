/* signalr_ws.h — the WebSockets transport of the local SignalR Service.
 *
 * Owns: RFC 6455 framing (the opening handshake's Sec-WebSocket-Accept, server frames, a
 * bounded incremental reader of masked client frames with fragmentation, control frames,
 * UTF-8 checks and close codes) and the WebSocket thread: one epoll loop that owns every
 * upgraded socket (libmicrohttpd hands them over with MHD_create_response_for_upgrade).
 * Sockets are non-blocking, so a slow or dead client never delays another. Outgoing
 * records come from the connection's bounded queue (signalr_conn.h) exactly as for SSE and
 * are written in order as Text frames through the connection's `stage` buffer (so the
 * queue bound counts unwritten frame bytes too); client Text messages go through
 * sr_client_receive like the bodies of SSE/long-polling POSTs. Closing sends whatever is
 * queued (the {"type":7} close message included), then a close frame, waits briefly for the
 * client's close frame, and gives the socket back to libmicrohttpd to close. */
#ifndef ENVIROMON_SIGNALR_WS_H
#define ENVIROMON_SIGNALR_WS_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/signalr/signalr_conn.h"
#include "util/buf.h"

struct MHD_UpgradeResponseHandle;
struct sr_registry;

enum {
    SR_WS_OP_CONT = 0x0, SR_WS_OP_TEXT = 0x1, SR_WS_OP_BINARY = 0x2,
    SR_WS_OP_CLOSE = 0x8, SR_WS_OP_PING = 0x9, SR_WS_OP_PONG = 0xA
};

#define SR_WS_CLOSE_NORMAL      1000
#define SR_WS_CLOSE_PROTOCOL    1002
#define SR_WS_CLOSE_UNSUPPORTED 1003
#define SR_WS_CLOSE_NO_STATUS   1005 /* reported when a close frame carried no code; never sent */
#define SR_WS_CLOSE_BAD_DATA    1007
#define SR_WS_CLOSE_TOO_BIG     1009
#define SR_WS_CLOSE_INTERNAL    1011

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + RFC 6455 GUID)).
 * The key must be base64 of exactly 16 bytes (24 characters). Writes 28 characters and a
 * NUL to out. Returns 0, or -1 when the key is invalid. */
int sr_ws_accept_key(const char *key, char out[29]);

/* Header of one unmasked server frame with FIN set. Writes 2, 4 or 10 bytes to out and
 * returns how many. */
size_t sr_ws_frame_header(unsigned opcode, size_t payload_len, unsigned char out[10]);

typedef enum {
    SR_WS_EV_NONE = 0, /* need more input */
    SR_WS_EV_TEXT,     /* a whole (reassembled) Text message */
    SR_WS_EV_BINARY,   /* a whole Binary message */
    SR_WS_EV_PING,
    SR_WS_EV_PONG,
    SR_WS_EV_CLOSE,    /* *code: the close code, or SR_WS_CLOSE_NO_STATUS */
    SR_WS_EV_ERROR     /* protocol violation: *code is the close code to send; the reader stops */
} sr_ws_event_t;

/* Incremental reader of client frames. Frames must be masked, RSV bits clear, control
 * frames unfragmented and at most 125 bytes; a message (all its fragments) larger than
 * max_msg is refused with 1009 as soon as a header announces it, before its payload is
 * buffered; Text messages must be UTF-8 (else 1007). */
typedef struct sr_ws_reader {
    buf_t  in;       /* received bytes; [off, in.len) not parsed yet */
    size_t off;
    buf_t  msg;      /* fragments of the message being reassembled */
    int    msg_op;   /* opcode of that message, 0 when none */
    int    msg_done; /* msg was returned; reset on the next call */
    int    failed;   /* an error was returned; nothing more is parsed */
    size_t max_msg;
} sr_ws_reader_t;

void sr_ws_reader_init(sr_ws_reader_t *r, size_t max_msg);
void sr_ws_reader_free(sr_ws_reader_t *r);
/* Append received bytes. Returns 0, or -1 when out of memory. Invalidates pointers returned
 * by sr_ws_reader_next. */
int sr_ws_reader_feed(sr_ws_reader_t *r, const void *data, size_t n);
/* Next event from the bytes fed so far. For TEXT/BINARY/PING/PONG/CLOSE, *data and *len
 * describe the (unmasked) payload (for CLOSE: the reason after the code), valid until the
 * next feed or next call. */
sr_ws_event_t sr_ws_reader_next(sr_ws_reader_t *r, const unsigned char **data, size_t *len,
                                unsigned *code);

/* ---- the WebSocket thread ---------------------------------------------------------- */

typedef struct sr_ws_server sr_ws_server_t;
struct sr_ws_conn;

/* Start the thread. Completed handshakes are activated in reg. max_msg bounds one client
 * message. close_grace_ms: how long a closing socket may take to drain and exchange close
 * frames before it is cut. Returns NULL with a message in err. */
sr_ws_server_t *sr_ws_server_start(struct sr_registry *reg, size_t max_msg, int close_grace_ms,
                                   char *err, size_t errlen);

/* Hand an upgraded socket of client c to the thread (it takes its own reference to c and,
 * on success, ownership of urh). extra: bytes libmicrohttpd already read after the request.
 * Returns 0, or -1 (stopped or out of memory): the caller still owns urh then. */
int sr_ws_server_attach(sr_ws_server_t *s, sr_client_t *c, int fd,
                        struct MHD_UpgradeResponseHandle *urh, const char *extra, size_t extra_len);

/* Tell the thread that w's client has something to write or is closing. Called by
 * signalr_conn.c with the client's lock held (takes only the thread's own lock). */
void sr_ws_notify(struct sr_ws_conn *w);

/* Close every socket at once (no more waiting) and join the thread; later attaches fail. */
void sr_ws_server_stop(sr_ws_server_t *s);

/* Free a stopped server. */
void sr_ws_server_free(sr_ws_server_t *s);

#endif
