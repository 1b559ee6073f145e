// usbdevfs for devices that live in a umockdev testbed. The host (libusb in
// pcscd's driver) submits URBs with ioctls; umockdev forwards each ioctl to
// the handler below, on the testbed's worker thread. IN URBs wait here until
// the device model delivers data; completed URBs wait until the host reaps.
//
// Idle cost: umockdev's device node is a regular file, always "writable" to
// poll(), so libusb would spin on REAPURBNDELAY. The node is replaced by a
// FIFO kept full (not writable) while nothing is reapable and drained (so
// writable, i.e. POLLOUT as usbfs signals completions) while something is.
#include "usbmock.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/usbdevice_fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <umockdev.h>
#include <unistd.h>

struct usbmock_bed {
    UMockdevTestbed *testbed;
    char *root;
    pthread_mutex_t uevent_lock;  // one uevent at a time, so room checked is room used
};

// How long a uevent waits for a listener that does not read its socket.
#define UEVENT_PATIENCE_MS 10000

typedef struct urb {
    struct urb *next;
    UMockdevIoctlData *urb_data;    // the host's struct usbdevfs_urb
    UMockdevIoctlData *buffer_data; // its buffer; NULL when empty
    uint8_t endpoint;
} urb;

typedef struct chunk {
    struct chunk *next;
    size_t length, offset;
    uint8_t data[];
} chunk;

#define USBMOCK_MAX_INTERFACES 8

// Data a device may hold for a host that does not poll (per endpoint).
#define QUEUED_LIMIT (1u << 20)

struct usbmock_device {
    usbmock_bed *bed;
    UMockdevIoctlBase *handler;
    char *syspath;
    // One sysfs usb_interface per interface of the configuration, in order (a composite token has several).
    char *interface_syspaths[USBMOCK_MAX_INTERFACES];
    int interface_count;
    char node[32];
    char *fifo_path;
    int fifo_fd;
    pthread_mutex_t lock;
    urb *pending;                   // IN URBs waiting for data, oldest first
    urb *reapable, *reapable_tail;  // done, for the host to reap
    chunk *queued[16];              // device → host data, by IN endpoint number
    size_t queued_bytes[16];
    uint8_t interface_number;
    int unplugged;
    // The remove uevents went out (after unplugged: a stale device is not yet removed).
    int removed;
    usbmock_callbacks cb;
};

static void set_error(char **error, const char *what, GError *e) {
    if (!error) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s: %s", what, e ? e->message : strerror(errno));
    *error = strdup(buf);
}

void usbmock_free_string(char *s) { free(s); }

int usbmock_in_mock_environment(void) { return umockdev_in_mock_environment(); }

usbmock_bed *usbmock_bed_new(char **error) {
    usbmock_bed *bed = calloc(1, sizeof *bed);
    if (!bed) { set_error(error, "calloc", NULL); return NULL; }
    bed->testbed = umockdev_testbed_new();
    if (!bed->testbed) { free(bed); set_error(error, "umockdev_testbed_new", NULL); return NULL; }
    bed->root = umockdev_testbed_get_root_dir(bed->testbed);
    pthread_mutex_init(&bed->uevent_lock, NULL);
    return bed;
}

const char *usbmock_bed_root(usbmock_bed *bed) { return bed->root; }

// --- Paced uevents --------------------------------------------------------
//
// umockdev delivers a uevent to each listener (a libudev monitor, e.g.
// pcscd's) on a nonblocking datagram socket, and exits this process when one
// listener's queue is full (net.unix.max_dgram_qlen, 10 by default): plugging
// readers faster than pcscd reads its monitor killed the simulator. A
// datagram socket connected to a listener polls writable only while that
// listener's queue has room, so each uevent first waits for room everywhere.

static long elapsed_ms(const struct timespec *since) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

// Waits until `path`'s queue has room; 0 if it has (or the listener is gone), -1 after `patience_ms`.
static int wait_for_room(const char *path, long patience_ms) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return 0;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return 0;
    int rv = 0;
    if (connect(fd, (struct sockaddr *) &addr, sizeof addr) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int ready;
        do ready = poll(&p, 1, (int) (patience_ms > 0 ? patience_ms : 0)); while (ready < 0 && errno == EINTR);
        rv = ready == 1 && (p.revents & POLLOUT) ? 0 : -1;
    }
    close(fd);
    return rv;
}

// Takes the uevent lock and waits until every listener has room for one
// more uevent: 0, or -1 (with a log line) if one stayed full. Call
// paced_end() after the one testbed call that emits the uevent.
static int paced_begin(usbmock_bed *bed, const char *what) {
    pthread_mutex_lock(&bed->uevent_lock);
    char *pattern = g_build_filename(bed->root, "event[0-9]*", NULL);
    glob_t listeners;
    int stuck = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (glob(pattern, GLOB_NOSORT, NULL, &listeners) == 0) {
        for (size_t i = 0; i < listeners.gl_pathc && !stuck; i++)
            stuck = wait_for_room(listeners.gl_pathv[i], UEVENT_PATIENCE_MS - elapsed_ms(&start)) != 0;
        globfree(&listeners);
    }
    g_free(pattern);
    if (stuck)
        fprintf(stderr, "usbmock: a uevent listener has not read its socket for %d s; %s skipped\n",
                UEVENT_PATIENCE_MS / 1000, what);
    return stuck ? -1 : 0;
}

static void paced_end(usbmock_bed *bed) { pthread_mutex_unlock(&bed->uevent_lock); }

static void send_uevent(usbmock_bed *bed, const char *syspath, const char *action) {
    if (paced_begin(bed, action) == 0) umockdev_testbed_uevent(bed->testbed, syspath, action);
    paced_end(bed);
}

// Adding and removing a device emit a uevent of their own.
static char *paced_add_device(usbmock_bed *bed, const char *name, const char *parent, gchar **attrs, gchar **props) {
    char *path = NULL;
    if (paced_begin(bed, "adding a device") == 0) path = umockdev_testbed_add_devicev(bed->testbed, "usb", name, parent, attrs, props);
    paced_end(bed);
    return path;
}

static void paced_remove_device(usbmock_bed *bed, const char *syspath) {
    if (paced_begin(bed, "removing a device") == 0) umockdev_testbed_remove_device(bed->testbed, syspath);
    paced_end(bed);
}

// --- FIFO readiness -------------------------------------------------------

static void sync_fifo(usbmock_device *d) {
    char block[4096];
    if (d->fifo_fd < 0) return;
    if (d->reapable || d->unplugged) {
        while (read(d->fifo_fd, block, sizeof block) > 0) {}
    } else {
        memset(block, 0, sizeof block);
        while (write(d->fifo_fd, block, sizeof block) > 0) {}
    }
}

// --- URB bookkeeping (all under d->lock) -----------------------------------

static struct usbdevfs_urb *urb_struct(urb *u) { return (struct usbdevfs_urb *) u->urb_data->data; }

static void make_reapable(usbmock_device *d, urb *u, int status, int actual) {
    struct usbdevfs_urb *s = urb_struct(u);
    s->status = status;
    s->actual_length = actual;
    u->next = NULL;
    if (d->reapable_tail) d->reapable_tail->next = u; else d->reapable = u;
    d->reapable_tail = u;
}

static void free_urb(urb *u) {
    if (u->buffer_data) umockdev_ioctl_data_unref(u->buffer_data);
    umockdev_ioctl_data_unref(u->urb_data);
    free(u);
}

// Moves queued device data into pending IN URBs of `endpoint`, oldest first.
// A URB takes at most its buffer; the rest waits for the next URB, as packets
// would. A transfer ends at the end of a delivered message.
static void match(usbmock_device *d, uint8_t endpoint) {
    int n = endpoint & 0x0F;
    urb **link = &d->pending;
    while (*link && d->queued[n]) {
        urb *u = *link;
        if (u->endpoint != endpoint) { link = &u->next; continue; }
        chunk *c = d->queued[n];
        struct usbdevfs_urb *s = urb_struct(u);
        size_t room = s->buffer_length > 0 ? (size_t) s->buffer_length : 0;
        size_t left = c->length - c->offset;
        size_t take = left < room ? left : room;
        if (take > 0 && u->buffer_data) memcpy(u->buffer_data->data, c->data + c->offset, take);
        c->offset += take;
        d->queued_bytes[n] -= take;
        if (c->offset >= c->length) {
            d->queued[n] = c->next;
            free(c);
        }
        *link = u->next;
        make_reapable(d, u, 0, (int) take);
    }
}

void usbmock_deliver(usbmock_device *d, uint8_t endpoint, const uint8_t *data, size_t length) {
    int n = endpoint & 0x0F;
    pthread_mutex_lock(&d->lock);
    if (!d->unplugged && d->queued_bytes[n] + length <= QUEUED_LIMIT) {
        chunk *c = malloc(sizeof *c + length);
        if (c) {
            c->next = NULL;
            c->length = length;
            c->offset = 0;
            memcpy(c->data, data, length);
            chunk **tail = &d->queued[n];
            while (*tail) tail = &(*tail)->next;
            *tail = c;
            d->queued_bytes[n] += length;
            match(d, endpoint);
            sync_fifo(d);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

// --- ioctls ---------------------------------------------------------------

static void complete(UMockdevIoctlClient *client, long result, int error) {
    umockdev_ioctl_client_complete(client, result, error);
}

static UMockdevIoctlData *resolve_arg(UMockdevIoctlClient *client, size_t size) {
    GError *e = NULL;
    UMockdevIoctlData *data = umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(client), 0, size, &e);
    if (e) { g_error_free(e); return NULL; }
    return data;
}

static void submit(usbmock_device *d, UMockdevIoctlClient *client) {
    UMockdevIoctlData *data = resolve_arg(client, sizeof(struct usbdevfs_urb));
    if (!data) { complete(client, -1, EFAULT); return; }
    struct usbdevfs_urb *s = (struct usbdevfs_urb *) data->data;
    if (s->buffer_length < 0 || (s->type != USBDEVFS_URB_TYPE_BULK && s->type != USBDEVFS_URB_TYPE_INTERRUPT &&
                                 s->type != USBDEVFS_URB_TYPE_CONTROL)) {
        umockdev_ioctl_data_unref(data);
        complete(client, -1, EINVAL);
        return;
    }
    urb *u = calloc(1, sizeof *u);
    if (!u) { umockdev_ioctl_data_unref(data); complete(client, -1, ENOMEM); return; }
    u->urb_data = data;
    u->endpoint = s->endpoint;
    if (s->buffer_length > 0) {
        GError *e = NULL;
        u->buffer_data = umockdev_ioctl_data_resolve(data, offsetof(struct usbdevfs_urb, buffer), (gsize) s->buffer_length, &e);
        if (e) { g_error_free(e); free_urb(u); complete(client, -1, EFAULT); return; }
    }
    uint8_t *buffer = u->buffer_data ? u->buffer_data->data : NULL;
    size_t length = (size_t) s->buffer_length;

    if (s->type == USBDEVFS_URB_TYPE_CONTROL) {
        if (length < 8) { free_urb(u); complete(client, -1, EINVAL); return; }
        size_t wlength = (size_t) buffer[6] | (size_t) buffer[7] << 8;
        size_t capacity = wlength < length - 8 ? wlength : length - 8;
        int n = d->cb.control(d->cb.context, buffer, buffer + 8, capacity);
        pthread_mutex_lock(&d->lock);
        if (n < 0) make_reapable(d, u, -EPIPE, 0);
        else make_reapable(d, u, 0, (buffer[0] & 0x80) ? (n < (int) capacity ? n : (int) capacity) : (int) capacity);
        sync_fifo(d);
        pthread_mutex_unlock(&d->lock);
        complete(client, 0, 0);
    } else if (s->endpoint & 0x80) {
        pthread_mutex_lock(&d->lock);
        urb **tail = &d->pending;
        while (*tail) tail = &(*tail)->next;
        *tail = u;
        match(d, u->endpoint);
        sync_fifo(d);
        pthread_mutex_unlock(&d->lock);
        complete(client, 0, 0);
    } else {
        // Copy out before the URB is handed back: the model answers through
        // usbmock_deliver, which takes the lock.
        uint8_t *copy = length ? malloc(length) : NULL;
        if (length && !copy) { free_urb(u); complete(client, -1, ENOMEM); return; }
        if (length) memcpy(copy, buffer, length);
        uint8_t endpoint = s->endpoint;
        pthread_mutex_lock(&d->lock);
        make_reapable(d, u, 0, (int) length);
        sync_fifo(d);
        pthread_mutex_unlock(&d->lock);
        complete(client, 0, 0);
        d->cb.data_out(d->cb.context, endpoint, copy, length);
        free(copy);
    }
}

static void reap(usbmock_device *d, UMockdevIoctlClient *client) {
    UMockdevIoctlData *data = resolve_arg(client, sizeof(void *));
    if (!data) { complete(client, -1, EFAULT); return; }
    pthread_mutex_lock(&d->lock);
    urb *u = d->reapable;
    if (u) {
        d->reapable = u->next;
        if (!d->reapable) d->reapable_tail = NULL;
        sync_fifo(d);
    }
    int unplugged = d->unplugged;
    pthread_mutex_unlock(&d->lock);
    if (!u) {
        umockdev_ioctl_data_unref(data);
        complete(client, -1, unplugged ? ENODEV : EAGAIN);
        return;
    }
    umockdev_ioctl_data_set_ptr(data, 0, u->urb_data);
    complete(client, 0, 0);
    umockdev_ioctl_data_unref(data);
    free_urb(u);
}

static void discard(usbmock_device *d, UMockdevIoctlClient *client) {
    UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
    gulong address = arg && arg->data_len >= (gint) sizeof(gulong) ? *(gulong *) arg->data : 0;
    pthread_mutex_lock(&d->lock);
    urb **link = &d->pending;
    while (*link && (*link)->urb_data->client_addr != address) link = &(*link)->next;
    urb *u = *link;
    if (u) {
        *link = u->next;
        make_reapable(d, u, -ENOENT, 0);
        sync_fifo(d);
    }
    pthread_mutex_unlock(&d->lock);
    complete(client, u ? 0 : -1, u ? 0 : EINVAL);
}

static gboolean on_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user_data) {
    (void) handler;
    usbmock_device *d = user_data;
    gulong request = umockdev_ioctl_client_get_request(client);
    pthread_mutex_lock(&d->lock);
    int unplugged = d->unplugged;
    pthread_mutex_unlock(&d->lock);

    if (request == USBDEVFS_REAPURB || request == USBDEVFS_REAPURBNDELAY) { reap(d, client); return TRUE; }
    if (unplugged) { complete(client, -1, ENODEV); return TRUE; }

    switch (request) {
    case USBDEVFS_SUBMITURB: submit(d, client); break;
    case USBDEVFS_DISCARDURB: discard(d, client); break;
    case USBDEVFS_GET_CAPABILITIES: {
        UMockdevIoctlData *data = resolve_arg(client, sizeof(uint32_t));
        if (!data) { complete(client, -1, EFAULT); break; }
        *(uint32_t *) data->data = USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_BULK_CONTINUATION |
                                   USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_REAP_AFTER_DISCONNECT;
        complete(client, 0, 0);
        umockdev_ioctl_data_unref(data);
        break;
    }
    case USBDEVFS_CLAIMINTERFACE:
    case USBDEVFS_RELEASEINTERFACE: {
        UMockdevIoctlData *data = resolve_arg(client, sizeof(unsigned int));
        if (!data) { complete(client, -1, EFAULT); break; }
        unsigned int number = *(unsigned int *) data->data;
        umockdev_ioctl_data_unref(data);
        // The device's other interfaces (a composite token's HID ones) belong to a kernel driver.
        if (number != d->interface_number) { complete(client, -1, number < (unsigned) d->interface_count ? EBUSY : EINVAL); break; }
        complete(client, 0, 0);
        if (request == USBDEVFS_RELEASEINTERFACE && d->cb.released) d->cb.released(d->cb.context);
        break;
    }
    case USBDEVFS_DISCONNECT_CLAIM: {
        UMockdevIoctlData *data = resolve_arg(client, sizeof(struct usbdevfs_disconnect_claim));
        if (!data) { complete(client, -1, EFAULT); break; }
        unsigned int number = ((struct usbdevfs_disconnect_claim *) data->data)->interface;
        umockdev_ioctl_data_unref(data);
        complete(client, number == d->interface_number ? 0 : -1, number == d->interface_number ? 0 : EINVAL);
        break;
    }
    case USBDEVFS_GETDRIVER: complete(client, -1, ENODATA); break;
    case USBDEVFS_SETCONFIGURATION:
    case USBDEVFS_SETINTERFACE:
    case USBDEVFS_CLEAR_HALT:
    case USBDEVFS_RESETEP:
    case USBDEVFS_RESET:
        complete(client, 0, 0);
        break;
    default:
        complete(client, -1, ENOTTY);
        break;
    }
    return TRUE;
}

// --- plug / unplug ----------------------------------------------------------

usbmock_device *usbmock_plug(usbmock_bed *bed, int bus, int address, const uint8_t *descriptors, size_t length,
                             uint8_t interface_number,
                             const char *manufacturer, const char *product, const char *serial,
                             usbmock_callbacks callbacks, char **error) {
    if (length < 18 || bus < 1 || bus > 255 || address < 1 || address > 127) {
        if (error) *error = strdup("bad descriptors, bus or address");
        return NULL;
    }
    usbmock_device *d = calloc(1, sizeof *d);
    if (!d) { set_error(error, "calloc", NULL); return NULL; }
    d->bed = bed;
    d->cb = callbacks;
    d->fifo_fd = -1;
    d->interface_number = interface_number;
    pthread_mutex_init(&d->lock, NULL);
    snprintf(d->node, sizeof d->node, "/dev/bus/usb/%03d/%03d", bus, address);

    uint16_t vid = descriptors[8] | descriptors[9] << 8, pid = descriptors[10] | descriptors[11] << 8;
    uint16_t bcd = descriptors[12] | descriptors[13] << 8;
    char name[32], sbus[8], sdev[8], svid[8], spid[8], sbcd[8], sdevno[16];
    char nvid[8], npid[8], product_prop[32];
    snprintf(name, sizeof name, "%d-%d", bus, address);
    snprintf(sbus, sizeof sbus, "%d\n", bus);
    snprintf(sdev, sizeof sdev, "%d\n", address);
    snprintf(svid, sizeof svid, "%04x\n", vid);
    snprintf(spid, sizeof spid, "%04x\n", pid);
    snprintf(nvid, sizeof nvid, "%04x", vid);
    snprintf(npid, sizeof npid, "%04x", pid);
    snprintf(sbcd, sizeof sbcd, "%04x\n", bcd);
    snprintf(sdevno, sizeof sdevno, "189:%d", (bus - 1) * 128 + address - 1);
    snprintf(product_prop, sizeof product_prop, "%x/%x/%x", vid, pid, bcd);
    char snumif[8];
    snprintf(snumif, sizeof snumif, "%2d\n", length > 22 ? descriptors[18 + 4] : 1);
    char sbusnum[8], sdevnum[8];
    snprintf(sbusnum, sizeof sbusnum, "%03d", bus);
    snprintf(sdevnum, sizeof sdevnum, "%03d", address);
    char *man_attr = g_strconcat(manufacturer ? manufacturer : "", "\n", NULL);
    char *prod_attr = g_strconcat(product ? product : "", "\n", NULL);
    char *serial_attr = g_strconcat(serial ? serial : "", "\n", NULL);

    gchar *attrs[] = {"busnum", sbus, "devnum", sdev, "idVendor", svid, "idProduct", spid, "bcdDevice", sbcd,
                      "bConfigurationValue", "1\n", "bNumInterfaces", snumif, "speed", "12\n", "dev", sdevno,
                      "manufacturer", man_attr, "product", prod_attr, "serial", serial_attr, NULL};
    gchar *props[] = {"DEVNAME", d->node, "DEVTYPE", "usb_device", "BUSNUM", sbusnum, "DEVNUM", sdevnum,
                      "PRODUCT", product_prop, "ID_VENDOR_ID", nvid, "ID_MODEL_ID", npid, NULL};
    d->syspath = paced_add_device(bed, name, NULL, attrs, props);
    g_free(man_attr);
    g_free(prod_attr);
    g_free(serial_attr);
    if (!d->syspath) { if (error) *error = strdup("umockdev could not add the device, or a uevent listener is not reading"); free(d); return NULL; }
    umockdev_testbed_set_attribute_binary(bed->testbed, d->syspath, "descriptors", (guint8 *) descriptors, (gint) length);
    // USB power management as the kernel starts a device: autosuspend off, persist on (udev rules may change both).
    umockdev_testbed_set_attribute(bed->testbed, d->syspath, "power/control", "on\n");
    umockdev_testbed_set_attribute(bed->testbed, d->syspath, "power/persist", "1\n");

    // Each interface (alternate setting 0) as the configuration describes it.
    for (size_t at = 18; at + 1 < length && descriptors[at] >= 2 && at + descriptors[at] <= length; at += descriptors[at]) {
        if (descriptors[at + 1] != 0x04 || descriptors[at] < 9 || descriptors[at + 3] != 0) continue;
        if (d->interface_count == USBMOCK_MAX_INTERFACES) break;
        char ifname[48], sifnum[8], sifclass[8], sifsub[8], sifproto[8], snumep[8];
        snprintf(ifname, sizeof ifname, "%d-%d:1.%d", bus, address, descriptors[at + 2]);
        snprintf(sifnum, sizeof sifnum, "%02x\n", descriptors[at + 2]);
        snprintf(snumep, sizeof snumep, "%02x\n", descriptors[at + 4]);
        snprintf(sifclass, sizeof sifclass, "%02x\n", descriptors[at + 5]);
        snprintf(sifsub, sizeof sifsub, "%02x\n", descriptors[at + 6]);
        snprintf(sifproto, sizeof sifproto, "%02x\n", descriptors[at + 7]);
        gchar *if_attrs[] = {"bInterfaceNumber", sifnum, "bAlternateSetting", " 0\n", "bInterfaceClass", sifclass,
                             "bInterfaceSubClass", sifsub, "bInterfaceProtocol", sifproto, "bNumEndpoints", snumep, NULL};
        gchar *if_props[] = {"DEVTYPE", "usb_interface", "PRODUCT", product_prop, NULL};
        char *path = paced_add_device(bed, ifname, d->syspath, if_attrs, if_props);
        if (path) d->interface_syspaths[d->interface_count++] = path;
    }

    d->handler = umockdev_ioctl_base_new();
    g_signal_connect(d->handler, "handle-ioctl", G_CALLBACK(on_ioctl), d);
    GError *e = NULL;
    if (!umockdev_testbed_attach_ioctl(bed->testbed, d->node, d->handler, &e)) {
        set_error(error, "umockdev_testbed_attach_ioctl", e);
        if (e) g_error_free(e);
        paced_remove_device(bed, d->syspath);
        free(d);
        return NULL;
    }
    // umockdev records the node's numbers but leaves the file to us.
    d->fifo_path = g_strconcat(bed->root, d->node, NULL);
    char *parent = g_path_get_dirname(d->fifo_path);
    g_mkdir_with_parents(parent, 0755);
    g_free(parent);
    unlink(d->fifo_path);
    if (mkfifo(d->fifo_path, 0666) == 0) d->fifo_fd = open(d->fifo_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (d->fifo_fd < 0) fprintf(stderr, "usbmock: %s: %s\n", d->fifo_path, strerror(errno));
    pthread_mutex_lock(&d->lock);
    sync_fifo(d);
    pthread_mutex_unlock(&d->lock);

    send_uevent(bed, d->syspath, "add");
    for (int i = 0; i < d->interface_count; i++) send_uevent(bed, d->interface_syspaths[i], "add");
    return d;
}

void usbmock_go_stale(usbmock_device *d) {
    pthread_mutex_lock(&d->lock);
    if (d->unplugged) { pthread_mutex_unlock(&d->lock); return; }
    d->unplugged = 1;
    while (d->pending) {
        urb *u = d->pending;
        d->pending = u->next;
        make_reapable(d, u, -ESHUTDOWN, 0);
    }
    for (int n = 0; n < 16; n++) {
        while (d->queued[n]) { chunk *c = d->queued[n]; d->queued[n] = c->next; free(c); }
        d->queued_bytes[n] = 0;
    }
    sync_fifo(d);
    pthread_mutex_unlock(&d->lock);
}

void usbmock_unplug(usbmock_device *d) {
    pthread_mutex_lock(&d->lock);
    if (d->removed) { pthread_mutex_unlock(&d->lock); return; }
    d->removed = 1;
    pthread_mutex_unlock(&d->lock);
    usbmock_go_stale(d);
    for (int i = d->interface_count - 1; i >= 0; i--) send_uevent(d->bed, d->interface_syspaths[i], "remove");
    send_uevent(d->bed, d->syspath, "remove");
    for (int i = d->interface_count - 1; i >= 0; i--) paced_remove_device(d->bed, d->interface_syspaths[i]);
    paced_remove_device(d->bed, d->syspath);
}

const char *usbmock_device_node(usbmock_device *d) { return d->node; }
