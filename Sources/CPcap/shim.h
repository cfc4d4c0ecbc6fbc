#ifndef FLOWMAP_CPCAP_SHIM_H
#define FLOWMAP_CPCAP_SHIM_H
#include <pcap/pcap.h>
#include <stdio.h>
#endif
