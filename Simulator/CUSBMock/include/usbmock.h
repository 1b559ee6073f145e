#ifndef USBMOCK_H
#define USBMOCK_H
// The usbdevfs side of a USB device that exists only in a umockdev testbed:
// libusb programs (pcscd and its driver) open /dev/bus/usb/BBB/DDD and their
// ioctls arrive here. Transfers go to and from the device model through
// these callbacks; no GLib type crosses this header.
#include <stddef.h>
#include <stdint.h>

typedef struct usbmock_bed usbmock_bed;
typedef struct usbmock_device usbmock_device;

typedef struct {
    void *context;
    // Data the host sent on an OUT endpoint.
    void (*data_out)(void *context, uint8_t endpoint, const uint8_t *data, size_t length);
    // A control transfer: 8 setup bytes; data holds the OUT data or receives
    // the IN data (capacity wLength). Returns the length, or -1 to stall.
    int (*control)(void *context, const uint8_t *setup, uint8_t *data, size_t capacity);
    // The host released the interface (its driver closed the device).
    void (*released)(void *context);
} usbmock_callbacks;

// A new testbed; its root is exported as UMOCKDEV_DIR for children. NULL and
// *error (free with usbmock_free_string) on failure.
usbmock_bed *usbmock_bed_new(char **error);
// The testbed root directory (owned by the bed).
const char *usbmock_bed_root(usbmock_bed *bed);
int usbmock_in_mock_environment(void);

// Adds a USB device with the interfaces its configuration describes and
// announces it ("add" uevents, the device's then each interface's).
// descriptors: device descriptor followed by the configuration (as sysfs
// shows them). Strings go to the sysfs attributes. interface_number is the
// CCID interface, the one a host may claim (the others: EBUSY).
usbmock_device *usbmock_plug(usbmock_bed *bed, int bus, int address, const uint8_t *descriptors, size_t length,
                             uint8_t interface_number,
                             const char *manufacturer, const char *product, const char *serial,
                             usbmock_callbacks callbacks, char **error);
// Device → host data for an IN endpoint; completes the oldest pending URB
// there, or waits for one (as a device NAKs until polled).
void usbmock_deliver(usbmock_device *device, uint8_t endpoint, const uint8_t *data, size_t length);
// Unplug: pending URBs fail with ESHUTDOWN, later requests with ENODEV,
// "remove" uevents, the device leaves sysfs. The handle stays valid (a late
// host may still hold the node); callbacks are no longer made.
void usbmock_unplug(usbmock_device *device);
// The first half of an unplug, with no uevent: the device's handles go stale
// (pending URBs fail with ESHUTDOWN, later requests with ENODEV), as after a
// system suspend, until usbmock_unplug announces the removal.
void usbmock_go_stale(usbmock_device *device);
// The device path as the host sees it (/dev/bus/usb/BBB/DDD).
const char *usbmock_device_node(usbmock_device *device);

void usbmock_free_string(char *s);

#endif
