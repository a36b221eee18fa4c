/* The benchmark's floor: an init that powers the guest off at once, so QEMU
 * start to exit is the kernel's own boot to its first userspace process. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    reboot(RB_POWER_OFF);
    return 0;
}
